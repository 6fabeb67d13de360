// Where a checkpoint keeps the AdamW moments of each logical tensor (a replicated parameter,
// or one global expert's slice of an expert parameter; grad_buckets.h names them): whole,
// beside the weights, when the run that saved it was unsharded; or in pieces, one file per
// rank (optimizer-RRRRR.safetensors, entries "<unit>#<moment>@<first element>"), when its
// optimizer was sharded. A loading run asks for any element range of any unit, so either
// kind of checkpoint resumes an unsharded run or a sharded one at any layout: re-sharding is
// copying the overlaps.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"

namespace triage {

// A shard file's entry name for elements from `first` of `unit`'s `moment`.
std::string moment_piece_key(const std::string& unit, const std::string& moment, int64_t first);

class MomentPieces {
 public:
  // `unit`'s whole `moment` is entry `key` of `file`.
  void add_whole(const SafetensorsFile& file, const std::string& key, const std::string& unit,
                 const std::string& moment);
  // Every entry of a shard file. Throws Error naming the file and entry if one is malformed.
  void add_shard_file(const SafetensorsFile& file);

  // Plans filling `destination` (1-D) with elements [first, first + numel) of `unit`'s
  // `moment`; throws Error naming the unit and range if the checkpoint does not hold them
  // all, or holds them in another dtype.
  void plan(const std::string& unit, const std::string& moment, int64_t first,
            const at::Tensor& destination);
  // The files the plans read from.
  std::set<const SafetensorsFile*> files_used() const;
  // Reads each planned piece once and copies its overlaps into place.
  void apply() const;

 private:
  struct Piece {
    const SafetensorsFile* file;
    std::string key;
    int64_t first, length;
  };
  struct Copy {
    int64_t from, to, length;  // offset in the piece, offset in the destination, elements
    at::Tensor destination;
  };
  std::map<std::string, std::map<int64_t, Piece>> pieces_;  // "unit#moment" -> first -> piece
  std::map<std::pair<const SafetensorsFile*, std::string>, std::vector<Copy>> copies_;
};

}  // namespace triage
