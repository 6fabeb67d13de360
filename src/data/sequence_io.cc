// FASTA and Stockholm readers over zlib's line reader.
#include "data/sequence_io.h"

#include <zlib.h>

#include <cctype>
#include <map>
#include <memory>

#include "common/error.h"

namespace triage {
namespace {

// Line-by-line reading of a plain or gzip file; counts lines for messages.
class LineReader {
 public:
  explicit LineReader(const std::string& path) : path_(path), file_(gzopen(path.c_str(), "rb")) {
    if (!file_) throw Error(path + ": cannot open the sequence file");
  }
  ~LineReader() { gzclose(file_); }
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  bool next(std::string& line) {
    line.clear();
    char buffer[4096];
    while (gzgets(file_, buffer, sizeof buffer)) {
      line += buffer;
      if (!line.empty() && line.back() == '\n') break;
    }
    int error = Z_OK;
    const char* text = gzerror(file_, &error);
    if (error != Z_OK && error != Z_STREAM_END)
      throw Error(where() + ": cannot read: " + (text ? text : "zlib error"));
    if (line.empty()) return false;
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    ++number_;
    return true;
  }
  int64_t number() const { return number_; }
  std::string where() const { return path_ + ":" + std::to_string(number_); }

 private:
  std::string path_;
  gzFile file_;
  int64_t number_ = 0;
};

std::string shorten(const std::string& text) {
  return text.size() <= 20 ? text : text.substr(0, 20) + "...";
}

// Appends the residues of `chunk` to `out`: gaps dropped, letters uppercased.
void append_residues(const std::string& chunk, std::string& out, const LineReader& in,
                     const std::string& name) {
  for (char c : chunk) {
    if (c == '-' || c == '.' || c == ' ' || c == '\t') continue;
    if (!std::isalpha(static_cast<unsigned char>(c)))
      throw Error(in.where() + ": sequence " + name + " has '" + std::string(1, c) +
                  "'; expected amino-acid letters, '-' or '.'");
    out += char(std::toupper(static_cast<unsigned char>(c)));
  }
}

void check_lengths(const std::string& path, const std::vector<SequenceRecord>& records,
                   int64_t max_residues) {
  if (records.empty()) throw Error(path + ": no sequences found");
  for (const auto& r : records) {
    if (r.residues.empty())
      throw Error(path + ":" + std::to_string(r.line) + ": sequence " + r.name + " is empty");
    if (max_residues > 0 && int64_t(r.residues.size()) > max_residues)
      throw Error(path + ":" + std::to_string(r.line) + ": sequence " + r.name + " has " +
                  std::to_string(r.residues.size()) + " residues; expected at most " +
                  std::to_string(max_residues) +
                  " (data.seq_len less BOS and EOS), or data.too_long: crop or skip");
  }
}

}  // namespace

std::vector<SequenceRecord> read_fasta(const std::string& path, int64_t max_residues) {
  LineReader in(path);
  std::vector<SequenceRecord> records;
  std::string line;
  while (in.next(line)) {
    if (line.empty()) continue;
    if (line[0] == '>') {
      std::string header = line.substr(1);
      size_t start = header.find_first_not_of(" \t");
      if (start == std::string::npos)
        throw Error(in.where() + ": header without a name; expected '>NAME ...'");
      header = header.substr(start);
      records.push_back({header.substr(0, header.find_first_of(" \t")), "", in.number()});
    } else {
      if (records.empty())
        throw Error(in.where() + ": found '" + shorten(line) +
                    "'; expected a FASTA header line starting with '>'");
      append_residues(line, records.back().residues, in, records.back().name);
    }
  }
  check_lengths(path, records, max_residues);
  return records;
}

std::vector<SequenceRecord> read_stockholm(const std::string& path, int64_t max_residues) {
  LineReader in(path);
  std::string line;
  if (!in.next(line) || line.rfind("# STOCKHOLM", 0) != 0)
    throw Error(path + ":1: found '" + shorten(line) + "'; expected '# STOCKHOLM 1.0'");
  std::vector<SequenceRecord> records;
  std::map<std::string, size_t> index;  // interleaved blocks append to the same record
  bool terminated = false;
  while (in.next(line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind("//", 0) == 0) {
      terminated = true;
      break;
    }
    // Exactly two fields: a name and its aligned residues.
    const size_t split = line.find_first_of(" \t");
    const size_t residues =
        split == std::string::npos ? split : line.find_first_not_of(" \t", split);
    const size_t last = line.find_last_not_of(" \t\r");
    if (residues == std::string::npos || line.find_first_of(" \t", residues) < last)
      throw Error(in.where() + ": found '" + shorten(line) +
                  "'; expected 'NAME  ALIGNED-RESIDUES'");
    const std::string name = line.substr(0, split);
    auto [it, fresh] = index.emplace(name, records.size());
    if (fresh) records.push_back({name, "", in.number()});
    append_residues(line.substr(split), records[it->second].residues, in, name);
  }
  if (!terminated)
    throw Error(in.where() +
                ": the alignment ends without '//'; expected a complete Stockholm file");
  check_lengths(path, records, max_residues);
  return records;
}

std::string stockholm_family_id(const std::string& path) {
  LineReader in(path);
  std::string line;
  if (!in.next(line) || line.rfind("# STOCKHOLM", 0) != 0) return "";
  while (in.next(line)) {
    if (line.rfind("#=GF ID", 0) == 0) {
      const size_t start = line.find_first_not_of(" \t", 7);
      const size_t end = line.find_last_not_of(" \t\r");
      return start == std::string::npos ? "" : line.substr(start, end - start + 1);
    }
    if (!line.empty() && line[0] != '#') break;  // the header is over
  }
  return "";
}

std::vector<SequenceRecord> read_sequences(const std::string& path, int64_t max_residues) {
  std::string first;
  {
    LineReader in(path);
    in.next(first);
  }
  return first.rfind("# STOCKHOLM", 0) == 0 ? read_stockholm(path, max_residues)
                                            : read_fasta(path, max_residues);
}

}  // namespace triage
