// Held-out documents and packed windows; see the header.
#include "data/packed_windows.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

#include "common/error.h"
#include "data/sequence_set.h"

namespace triage {

DocumentSplit hold_out_documents(int64_t documents, double test_fraction, uint64_t seed) {
  TRIAGE_ASSERT(documents > 0 && test_fraction >= 0 && test_fraction < 1,
                documents << " documents, test fraction " << test_fraction);
  const int64_t held = held_out_count(documents, test_fraction);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed ^ 0x646f635f73706c74ULL);
  const at::Tensor order = at::randperm(documents, gen);
  std::vector<int64_t> test(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + held);
  std::sort(test.begin(), test.end());
  DocumentSplit split;
  int64_t next = 0;  // the first document not yet placed
  for (size_t i = 0; i < test.size(); ++i) {
    if (test[i] > next) split.train.push_back({next, test[i]});
    if (split.test.empty() || split.test.back().end != test[i])
      split.test.push_back({test[i], test[i] + 1});
    else
      ++split.test.back().end;
    next = test[i] + 1;
  }
  if (next < documents) split.train.push_back({next, documents});
  return split;
}

PackedWindows::PackedWindows(std::shared_ptr<const TokenFile> file,
                             const std::vector<DocumentRange>& documents, int64_t length)
    : file_(std::move(file)), length_(length) {
  TRIAGE_ASSERT(length > 0, "window length " << length);
  for (const DocumentRange& range : documents) {
    TRIAGE_ASSERT(range.begin < range.end && range.end <= file_->documents(),
                  "documents [" << range.begin << ", " << range.end << ")");
    run_file_start_.push_back(file_->document_start(range.begin));
    run_stream_start_.push_back(stream_);
    stream_ += file_->document_start(range.end) - file_->document_start(range.begin);
    documents_ += range.end - range.begin;
  }
  run_stream_start_.push_back(stream_);
  windows_ = stream_ / length_;
}

std::vector<int64_t> PackedWindows::read(int64_t window) const {
  TRIAGE_ASSERT(window >= 0 && window < windows_, "window " << window << " of " << windows_);
  std::vector<int64_t> ids(static_cast<size_t>(length_));
  int64_t position = window * length_, filled = 0;
  // The run holding `position`: the last whose stream start is at or before it.
  size_t run =
      size_t(std::upper_bound(run_stream_start_.begin(), run_stream_start_.end(), position) -
             run_stream_start_.begin() - 1);
  while (filled < length_) {
    const int64_t offset = position - run_stream_start_[run];
    const int64_t count = std::min(length_ - filled, run_stream_start_[run + 1] - position);
    file_->read(run_file_start_[run] + offset, count, ids.data() + filled);
    filled += count;
    position += count;
    ++run;
  }
  return ids;
}

}  // namespace triage
