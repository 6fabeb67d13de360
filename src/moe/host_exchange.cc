// The hierarchical exchange; see host_exchange.h.
#include "moe/host_exchange.h"

#include <algorithm>

#include "common/error.h"
#include "moe/count_ids.h"

namespace triage {
namespace {

at::Tensor int_tensor(const std::vector<int>& values, const at::TensorOptions& index) {
  return at::tensor(std::vector<int64_t>(values.begin(), values.end()),
                    at::TensorOptions().dtype(at::kLong))
      .to(index.device());
}

// Scatters each received choice into its unit's row of a [units, slots] table, in the
// order the choices arrived (a source sends them by key, so by expert within a unit).
struct UnitTable {
  at::Tensor unit_Q, slot_Q;
  at::Tensor filled_VS;  // bool
  at::Tensor place(const at::Tensor& values_Q, const at::Tensor& empty_VS) const {
    return at::index_put(empty_VS, {unit_Q, slot_Q}, values_Q);
  }
};

UnitTable unit_table(const at::Tensor& unit_Q, int64_t units, int64_t slots) {
  UnitTable table;
  table.unit_Q = unit_Q;
  const at::Tensor by_unit = std::get<1>(at::sort(unit_Q, /*stable=*/true, 0, false));
  const at::Tensor per_unit = count_ids(unit_Q, units);
  const at::Tensor first_V = per_unit.cumsum(0) - per_unit;
  const at::Tensor position = at::arange(unit_Q.size(0), unit_Q.options());
  const at::Tensor slot_sorted =
      position - first_V.index_select(0, unit_Q.index_select(0, by_unit));
  table.slot_Q = at::empty_like(unit_Q).index_put_({by_unit}, slot_sorted);
  table.filled_VS = table.place(at::ones({unit_Q.size(0)}, unit_Q.options().dtype(at::kBool)),
                                at::zeros({units, slots}, unit_Q.options().dtype(at::kBool)));
  return table;
}

}  // namespace

ExchangeChoice choose_exchange(Exchange setting, Communicator& ep, bool on_gpu) {
  if (setting == Exchange::kFlat) return {false, "flat (moe.exchange)"};
  const std::vector<int>& hosts = ep.hosts();
  const std::string uneven = uneven_hosts(hosts);
  const int host_count = *std::max_element(hosts.begin(), hosts.end()) + 1;
  const std::string shape = std::to_string(host_count) + " host(s) x " +
                            std::to_string(int(hosts.size()) / host_count) + " EP rank(s)";
  if (setting == Exchange::kHierarchical) {
    if (!uneven.empty())
      throw Error(
          "moe.exchange: hierarchical needs the same number of EP ranks on every "
          "host, but " +
          uneven + "; use flat or auto");
    return {true, "hierarchical (moe.exchange): " + shape};
  }
  // Measured (docs/layer.md): with one rank per host the two send the same rows and the
  // second level only adds its collectives; on one host there is no network to spare.
  if (!uneven.empty()) return {false, "flat (auto): " + uneven};
  if (host_count == 1) return {false, "flat (auto): the EP group is on one host"};
  if (on_gpu)
    return {false, "flat (auto): " + shape +
                       ", but the hierarchical exchange has not run on GPUs yet (set "
                       "moe.exchange: hierarchical to use it)"};
  if (int(hosts.size()) == host_count)
    return {false, "flat (auto): " + shape + ", so the per_rank rows are already one per host"};
  return {true, "hierarchical (auto): " + shape};
}

at::Tensor tokens_reaching_host(const at::Tensor& experts_TK, const at::Tensor& keep_TK,
                                int64_t experts_per_rank, const std::vector<int>& host_of_rank,
                                int64_t hosts) {
  const at::Tensor host_TK =
      int_tensor(host_of_rank, experts_TK.options())
          .index_select(0, experts_TK.reshape({-1}).div(experts_per_rank, "floor"))
          .view_as(experts_TK);
  const at::Tensor kept = keep_TK.defined() ? keep_TK : at::ones_like(host_TK, at::kBool);
  return count_ids(host_TK, hosts, first_choice_per_rank(host_TK, kept, hosts));
}

TokenExchanged experts_by_host_exchange(const at::Tensor& x_TD, const at::Tensor& experts_TK,
                                        const at::Tensor& keep_TK, const at::Tensor& weights_TK,
                                        int64_t num_experts, const Experts& experts,
                                        const HostLevels& levels, const at::Tensor& extra_counts,
                                        const at::Tensor& token_T, const RowDropout& dropout,
                                        const InFlightWork& while_in_flight, int64_t chunks) {
  const int64_t ranks = int64_t(levels.host_of_rank.size());
  TRIAGE_ASSERT(num_experts % ranks == 0, num_experts << " experts over " << ranks << " ranks");
  const int64_t local_experts = num_experts / ranks;
  const int64_t per_host = levels.ranks_per_host * local_experts;  // keys per destination host
  const at::TensorOptions index = experts_TK.options();

  // A choice's key on the outer level: its expert's host, then the expert's place among the
  // host's experts (its rank's place there, then its local id); on the host, that place is
  // the key of the per_rank exchange. The EP group need not list a host's ranks together.
  std::vector<int> key_of_expert(static_cast<size_t>(num_experts), 0),
      expert_of_key(static_cast<size_t>(num_experts), 0);
  for (int64_t e = 0; e < num_experts; ++e) {
    const int64_t rank = e / local_experts;
    const int key = int(levels.host_of_rank[size_t(rank)] * per_host +
                        levels.place_of_rank[size_t(rank)] * local_experts + e % local_experts);
    key_of_expert[size_t(e)] = key;
    expert_of_key[size_t(key)] = int(e);
  }
  const at::Tensor key_TK = int_tensor(key_of_expert, index)
                                .index_select(0, experts_TK.reshape({-1}))
                                .view_as(experts_TK);
  TRIAGE_ASSERT(!dropout || token_T.defined(), "expert dropout needs each row's global token");
  const int me = levels.across_hosts->rank();
  const at::Tensor expert_of_my_key =
      int_tensor(expert_of_key, index).narrow(0, int64_t(me) * per_host, per_host);

  int64_t fanned_out_rows = 0;
  // On the destination host: the units' choices as a table of up to K per unit, sent on to
  // the host's ranks by the per_rank exchange; its result is each unit's host sum.
  UnitWork fan_out = [&](const ReceivedUnits& r) {
    const int64_t units = r.x_VD.size(0), slots = experts_TK.size(1);
    const UnitTable table = unit_table(r.unit_Q, units, slots);
    const at::Tensor key_VS = table.place(r.id_Q, at::zeros({units, slots}, index));
    const at::Tensor weight_VS =
        table.place(r.weight_Q, at::zeros({units, slots}, r.weight_Q.options()));
    // Each unit's global token travels on with it, for the dropout's keys.
    RowDropout host_dropout;
    at::Tensor token_V;
    if (dropout) {
      token_V = at::zeros({units}, index).index_put_({r.unit_Q}, r.token_Q);
      host_dropout = [&](const at::Tensor& y_RD, const at::Tensor& token_R,
                         const at::Tensor& key_R) {
        return dropout(y_RD, token_R, expert_of_my_key.index_select(0, key_R));
      };
    }
    TokenExchanged on_host =
        experts_by_token_exchange(r.x_VD, key_VS, table.filled_VS, weight_VS, per_host, experts,
                                  *levels.on_host, {}, token_V, host_dropout, {}, chunks);
    fanned_out_rows = on_host.received_rows;
    return on_host.y_TD;
  };
  TokenExchanged out =
      exchange_units(x_TD, key_TK, per_host, keep_TK, weights_TK, *levels.across_hosts,
                     extra_counts, token_T, while_in_flight, fan_out);

  // Back to the callers' terms: counts per global expert, rows per EP rank.
  std::vector<int64_t> per_expert(static_cast<size_t>(num_experts), 0);
  for (int64_t e = 0; e < num_experts; ++e)
    per_expert[size_t(e)] = out.tokens_per_expert[size_t(key_of_expert[size_t(e)])];
  out.tokens_per_expert = std::move(per_expert);
  std::vector<int64_t> per_rank(size_t(ranks), 0);
  const int place = levels.on_host->rank();
  for (int h = 0; h < levels.hosts; ++h)
    per_rank[size_t(levels.rank_at[size_t(h * levels.ranks_per_host + place)])] =
        out.sent_units[size_t(h)];
  out.sent_units = std::move(per_rank);
  out.received_rows = fanned_out_rows;
  return out;
}

}  // namespace triage
