// Moments by logical tensor and element range; see the header.
#include "checkpoint/moment_pieces.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "common/error.h"

namespace triage {

std::string moment_piece_key(const std::string& unit, const std::string& moment, int64_t first) {
  return unit + "#" + moment + "@" + std::to_string(first);
}

void MomentPieces::add_whole(const SafetensorsFile& file, const std::string& key,
                             const std::string& unit, const std::string& moment) {
  const SafetensorsFile::Entry& e = file.entry(key);
  int64_t numel = 1;
  for (int64_t d : e.shape) numel *= d;
  pieces_[unit + "#" + moment][0] = {&file, key, 0, numel};
}

void MomentPieces::add_shard_file(const SafetensorsFile& file) {
  for (const auto& [key, e] : file.entries()) {
    const size_t hash = key.rfind('#'), at = key.rfind('@');
    int64_t first = -1;
    if (hash != std::string::npos && at != std::string::npos && at > hash && at + 1 < key.size() &&
        std::all_of(key.begin() + long(at) + 1, key.end(), ::isdigit) && key.size() - at < 19)
      first = std::stoll(key.substr(at + 1));
    if (first < 0 || e.shape.size() != 1)
      throw Error(file.path() + ": entry " + key +
                  " is not a moment piece; expected <unit>#<moment>@<first element>, 1-D");
    pieces_[key.substr(0, at)][first] = {&file, key, first, e.shape[0]};
  }
}

void MomentPieces::plan(const std::string& unit, const std::string& moment, int64_t first,
                        const at::Tensor& destination) {
  const int64_t last = first + destination.numel();
  const std::string name = unit + "#" + moment;
  auto missing = [&](int64_t at) {
    return Error("the checkpoint holds no " + moment + " of " + unit + " at element " +
                 std::to_string(at) + " (wanted [" + std::to_string(first) + ", " +
                 std::to_string(last) + "); a checkpoint of a different model?)");
  };
  auto found = pieces_.find(name);
  if (found == pieces_.end()) {
    if (first == last) return;
    throw missing(first);
  }
  const std::map<int64_t, Piece>& by_first = found->second;
  int64_t at = first;
  auto it = by_first.upper_bound(at);
  if (it != by_first.begin()) --it;
  for (; at < last; ++it) {
    if (it == by_first.end() || it->second.first > at || it->second.first + it->second.length <= at)
      throw missing(at);
    const Piece& piece = it->second;
    const SafetensorsFile::Entry& e = piece.file->entry(piece.key);
    if (e.dtype != destination.scalar_type())
      throw Error(piece.file->path() + ": " + piece.key + " is " + c10::toString(e.dtype) +
                  "; this run keeps its moments in " + c10::toString(destination.scalar_type()) +
                  " (was train.dtype changed?)");
    const int64_t length = std::min(last, piece.first + piece.length) - at;
    copies_[{piece.file, piece.key}].push_back({at - piece.first, at - first, length, destination});
    at += length;
  }
}

std::set<const SafetensorsFile*> MomentPieces::files_used() const {
  std::set<const SafetensorsFile*> used;
  for (const auto& [source, copies] : copies_) used.insert(source.first);
  return used;
}

void MomentPieces::apply() const {
  for (const auto& [source, copies] : copies_) {
    const at::Tensor piece = source.first->read(source.second).reshape({-1});
    for (const Copy& c : copies)
      c.destination.narrow(0, c.to, c.length).copy_(piece.narrow(0, c.from, c.length));
  }
}

}  // namespace triage
