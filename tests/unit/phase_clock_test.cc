// phase_clock: marks split time into labelled phases, laps cut it per step, and a wait
// for peers is its own phase; nothing is recorded while the clock is stopped.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
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

double seconds_of(const phase_clock::Totals& totals, Phase phase) {
  for (const auto& [entered, s] : totals)
    if (entered == phase) return s;
  return -1;
}

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

TEST(PhaseClock, EachMarkAddsTheTimeUntilTheNextToItsPhaseInFirstSeenOrder) {
  phase_clock::start({});
  phase_clock::enter(Phase::kRoute);
  sleep_ms(20);
  phase_clock::enter(Phase::kExperts);
  sleep_ms(10);
  phase_clock::enter(Phase::kRoute);
  sleep_ms(20);
  const phase_clock::Totals totals = phase_clock::stop();
  ASSERT_EQ(totals.size(), 2u);
  EXPECT_EQ(totals[0].first, Phase::kRoute);
  EXPECT_GE(totals[0].second, 0.040);  // sleeps last at least as long as asked
  EXPECT_GE(totals[1].second, 0.010);
}

TEST(PhaseClock, MarksWhileStoppedRecordNothing) {
  phase_clock::enter(Phase::kRoute);
  EXPECT_FALSE(phase_clock::active());
  EXPECT_FALSE(phase_clock::current().has_value());
  EXPECT_TRUE(phase_clock::stop().empty());
}

TEST(PhaseClock, LapsHoldTheTimeSinceThePreviousLap) {
  phase_clock::start({});
  phase_clock::enter(Phase::kCompute);
  sleep_ms(10);
  phase_clock::lap();
  sleep_ms(10);
  phase_clock::lap();
  phase_clock::stop();
  ASSERT_EQ(phase_clock::laps().size(), 2u);
  EXPECT_GE(seconds_of(phase_clock::laps()[0], Phase::kCompute), 0.010);
  EXPECT_GE(seconds_of(phase_clock::laps()[1], Phase::kCompute), 0.010);
}

TEST(PhaseClock, WaitingForPeersIsTimedApartAndThePhaseResumes) {
  CountingCommunicator comm;
  phase_clock::start({});
  phase_clock::enter(Phase::kDispatchRows);
  phase_clock::wait_for_peers(comm);
  EXPECT_EQ(phase_clock::current(), Phase::kDispatchRows);
  phase_clock::wait_for_peers(comm, /*backward=*/true);
  const phase_clock::Totals totals = phase_clock::stop();
  EXPECT_EQ(comm.barriers, 2);
  EXPECT_GE(seconds_of(totals, Phase::kWait), 0.020);
  EXPECT_GE(seconds_of(totals, Phase::kWaitBwd), 0.020);
}

// One scope per collective: it opens the phase after a timed wait for peers ("wait bwd"
// before a backward phase) and names the phase to the watchdog while it lasts.
TEST(PhaseClock, CollectiveScopeMarksWaitsAndNamesItsPhase) {
  CountingCommunicator comm;
  const std::string outside = watchdog::current_label();
  phase_clock::start({});
  {
    phase_clock::CollectiveScope collective(Phase::kCountExchange, comm);
    EXPECT_EQ(phase_clock::current(), Phase::kCountExchange);
    const std::string label = watchdog::current_label();
    EXPECT_EQ(label.substr(label.size() - std::string("count exchange").size()), "count exchange");
  }
  { phase_clock::CollectiveScope collective(Phase::kDispatchRowsBwd, comm, "backward of x"); }
  EXPECT_EQ(watchdog::current_label(), outside);
  const phase_clock::Totals totals = phase_clock::stop();
  EXPECT_EQ(comm.barriers, 2);
  EXPECT_GT(seconds_of(totals, Phase::kWait), 0);
  EXPECT_GT(seconds_of(totals, Phase::kWaitBwd), 0);
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
