// Two levels of a group over its hosts; see host_levels.h.
#include "parallel/host_levels.h"

#include <algorithm>
#include <sstream>

#include "common/error.h"

namespace triage {

Communicator::Communicator() = default;
Communicator::~Communicator() = default;

const std::vector<int>& Communicator::hosts() {
  if (hosts_.empty()) hosts_ = host_of_ranks();
  return hosts_;
}

const HostLevels& Communicator::host_levels() {
  if (!host_levels_) host_levels_ = make_host_levels(*this, hosts());
  return *host_levels_;
}

std::string uneven_hosts(const std::vector<int>& host_of_rank) {
  const int hosts =
      host_of_rank.empty() ? 0 : *std::max_element(host_of_rank.begin(), host_of_rank.end()) + 1;
  std::vector<int> ranks_on(size_t(hosts), 0);
  for (int h : host_of_rank) ++ranks_on[size_t(h)];
  if (std::all_of(ranks_on.begin(), ranks_on.end(), [&](int n) { return n == ranks_on[0]; }))
    return "";
  std::ostringstream why;
  why << "its hosts hold different numbers of its ranks (";
  for (int h = 0; h < hosts; ++h) why << (h ? ", " : "") << ranks_on[size_t(h)];
  why << ")";
  return why.str();
}

std::unique_ptr<HostLevels> make_host_levels(Communicator& group,
                                             const std::vector<int>& host_of_rank) {
  const std::string uneven = uneven_hosts(host_of_rank);
  if (!uneven.empty()) throw Error("the EP group cannot be split by host: " + uneven);
  auto levels = std::make_unique<HostLevels>();
  const int ranks = int(host_of_rank.size());
  levels->hosts = *std::max_element(host_of_rank.begin(), host_of_rank.end()) + 1;
  levels->ranks_per_host = ranks / levels->hosts;
  levels->host_of_rank = host_of_rank;
  levels->place_of_rank.assign(size_t(ranks), 0);
  levels->rank_at.assign(size_t(ranks), 0);
  std::vector<int> placed(size_t(levels->hosts), 0);
  for (int r = 0; r < ranks; ++r) {
    const int h = host_of_rank[size_t(r)], place = placed[size_t(h)]++;
    levels->place_of_rank[size_t(r)] = place;
    levels->rank_at[size_t(h * levels->ranks_per_host + place)] = r;
  }
  const int me = group.rank();
  levels->on_host = group.split(host_of_rank[size_t(me)], levels->place_of_rank[size_t(me)]);
  levels->across_hosts = group.split(levels->place_of_rank[size_t(me)], host_of_rank[size_t(me)]);
  return levels;
}

}  // namespace triage
