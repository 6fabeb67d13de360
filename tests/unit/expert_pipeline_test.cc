// The pipelined exchange's layout: which packed rows go where in each chunk, where they
// land, and the runs the experts compute on; worked out by hand for one rank of three.
#include <gtest/gtest.h>

#include "moe/expert_pipeline.h"

namespace triage {
namespace {

// Rank 1 of 3, two local experts. Packed rows, by (rank, local expert): 1 2 | 3 0 | 4 5,
// so rank p's rows start at 0, 3 and 6 and expert (2, 1)'s at 10. Received, by (source,
// local expert): 6 7 | 3 0 (its own, equal to what it packed) | 8 9.
const std::vector<int64_t> kPacked = {1, 2, 3, 0, 4, 5};
const std::vector<int64_t> kReceived = {6, 7, 3, 0, 8, 9};

void expect_span(const RowSpan& span, int64_t offset, int64_t rows, const std::string& what) {
  EXPECT_EQ(span.offset, offset) << what;
  EXPECT_EQ(span.rows, rows) << what;
}

void expect_run(const ExpertRowRun& run, int64_t expert, int64_t offset, int64_t rows) {
  EXPECT_EQ(run.expert, expert);
  EXPECT_EQ(run.offset, offset);
  EXPECT_EQ(run.rows, rows);
}

TEST(ExpertPipelineLayout, OwnRowsStayInThePackedBufferAndEmptyRunsAreSkipped) {
  const ExpertLayout layout = expert_parallel_layout(kPacked, kReceived, 1, 3, 1);
  ASSERT_EQ(layout.own_runs.size(), 1u);  // own expert 1 got no rows
  expect_run(layout.own_runs[0], 0, 3, 3);
}

TEST(ExpertPipelineLayout, OneChunkSendsEachRanksBlockAndReceivesBySourceThenExpert) {
  const ExpertLayout layout = expert_parallel_layout(kPacked, kReceived, 1, 3, 1);
  ASSERT_EQ(layout.chunks.size(), 1u);
  const ExchangeChunk& chunk = layout.chunks[0];
  expect_span(chunk.send[0], 0, 3, "send to 0");
  expect_span(chunk.send[1], 0, 0, "nothing to itself");
  expect_span(chunk.send[2], 6, 9, "send to 2");
  expect_span(chunk.recv[0], 0, 13, "from 0");
  expect_span(chunk.recv[1], 0, 0, "nothing from itself");
  expect_span(chunk.recv[2], 13, 17, "from 2");
  ASSERT_EQ(chunk.runs.size(), 4u);
  expect_run(chunk.runs[0], 0, 0, 6);
  expect_run(chunk.runs[1], 1, 6, 7);
  expect_run(chunk.runs[2], 0, 13, 8);
  expect_run(chunk.runs[3], 1, 21, 9);
  EXPECT_EQ(layout.received_rows, 30);
}

TEST(ExpertPipelineLayout, ChunkJCarriesEveryRanksJthGroupOfLocalExperts) {
  const ExpertLayout layout = expert_parallel_layout(kPacked, kReceived, 1, 3, 2);
  ASSERT_EQ(layout.chunks.size(), 2u);
  const ExchangeChunk &first = layout.chunks[0], &second = layout.chunks[1];
  expect_span(first.send[0], 0, 1, "chunk 0 to 0");
  expect_span(first.send[2], 6, 4, "chunk 0 to 2");
  expect_span(second.send[0], 1, 2, "chunk 1 to 0");
  expect_span(second.send[2], 10, 5, "chunk 1 to 2");
  expect_span(first.recv[0], 0, 6, "chunk 0 from 0");
  expect_span(first.recv[2], 6, 8, "chunk 0 from 2");
  expect_span(second.recv[0], 14, 7, "chunk 1 from 0");
  expect_span(second.recv[2], 21, 9, "chunk 1 from 2");
  ASSERT_EQ(first.runs.size(), 2u);
  expect_run(first.runs[1], 0, 6, 8);
  ASSERT_EQ(second.runs.size(), 2u);
  expect_run(second.runs[0], 1, 14, 7);
}

TEST(ExpertPipelineLayout, ChunksAreAtMostTheLocalExperts) {
  EXPECT_EQ(expert_parallel_layout(kPacked, kReceived, 1, 3, 16).chunks.size(), 2u);
}

TEST(ExpertPipelineLayout, OneRankHasNoExchange) {
  const ExpertLayout layout = expert_parallel_layout({2, 0, 5}, {2, 0, 5}, 0, 1, 4);
  EXPECT_TRUE(layout.chunks.empty());
  ASSERT_EQ(layout.own_runs.size(), 2u);
  expect_run(layout.own_runs[1], 2, 2, 5);
}

}  // namespace
}  // namespace triage
