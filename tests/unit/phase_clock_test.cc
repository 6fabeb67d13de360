// phase_clock: marks split time into labelled phases, laps cut it per step, and a wait
// for peers is its own phase; nothing is recorded while the clock is stopped.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "fake_communicator.h"
#include "parallel/phase_clock.h"

namespace triage {
namespace {

// Counts barriers; every other collective is unused here.
struct CountingCommunicator : testing_support::OneRankCommunicator {
  int barriers = 0;
  void barrier() override {
    ++barriers;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
};

double seconds_of(const phase_clock::Totals& totals, const std::string& label) {
  for (const auto& [name, s] : totals)
    if (name == label) return s;
  return -1;
}

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

TEST(PhaseClock, EachMarkAddsTheTimeUntilTheNextToItsLabelInFirstSeenOrder) {
  phase_clock::start({});
  phase_clock::enter("a");
  sleep_ms(20);
  phase_clock::enter("b");
  sleep_ms(10);
  phase_clock::enter("a");
  sleep_ms(20);
  const phase_clock::Totals totals = phase_clock::stop();
  ASSERT_EQ(totals.size(), 2u);
  EXPECT_EQ(totals[0].first, "a");
  EXPECT_GE(totals[0].second, 0.040);  // sleeps last at least as long as asked
  EXPECT_GE(totals[1].second, 0.010);
}

TEST(PhaseClock, MarksWhileStoppedRecordNothing) {
  phase_clock::enter("ignored");
  EXPECT_FALSE(phase_clock::active());
  EXPECT_TRUE(phase_clock::current().empty());
  EXPECT_TRUE(phase_clock::stop().empty());
}

TEST(PhaseClock, LapsHoldTheTimeSinceThePreviousLap) {
  phase_clock::start({});
  phase_clock::enter("step");
  sleep_ms(10);
  phase_clock::lap();
  sleep_ms(10);
  phase_clock::lap();
  phase_clock::stop();
  ASSERT_EQ(phase_clock::laps().size(), 2u);
  EXPECT_GE(seconds_of(phase_clock::laps()[0], "step"), 0.010);
  EXPECT_GE(seconds_of(phase_clock::laps()[1], "step"), 0.010);
}

TEST(PhaseClock, WaitingForPeersIsTimedApartAndThePhaseResumes) {
  CountingCommunicator comm;
  phase_clock::start({});
  phase_clock::enter("exchange");
  phase_clock::wait_for_peers(comm);
  EXPECT_EQ(phase_clock::current(), "exchange");
  phase_clock::wait_for_peers(comm, /*backward=*/true);
  const phase_clock::Totals totals = phase_clock::stop();
  EXPECT_EQ(comm.barriers, 2);
  EXPECT_GE(seconds_of(totals, "wait"), 0.020);
  EXPECT_GE(seconds_of(totals, "wait bwd"), 0.020);
}

TEST(PhaseClock, WithoutWaitForPeersNoBarrierIsCalled) {
  CountingCommunicator comm;
  phase_clock::start({/*wait_for_peers=*/false, {}});
  phase_clock::wait_for_peers(comm);
  phase_clock::stop();
  EXPECT_EQ(comm.barriers, 0);
}

// LibTorch runs a GPU backward on a device thread, where MPI (FUNNELED) is illegal: the
// timed barrier is made only on the thread that started the clock.
TEST(PhaseClock, WaitForPeersMakesNoBarrierOffTheThreadThatStartedTheClock) {
  CountingCommunicator comm;
  phase_clock::start({});
  std::thread backward([&] { phase_clock::wait_for_peers(comm, /*backward=*/true); });
  backward.join();
  EXPECT_EQ(comm.barriers, 0);
  phase_clock::wait_for_peers(comm);
  EXPECT_EQ(comm.barriers, 1);
  phase_clock::stop();
}

}  // namespace
}  // namespace triage
