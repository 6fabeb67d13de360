#!/usr/bin/python3
"""check_bench.py KIND PATH: asserts what a benchmark's output must hold, with expected
values worked out from the benchmark's inputs (see each check). Exit 1 with the reason."""
import json
import sys
from pathlib import Path

LAYER_PHASES = ["route", "sort/pack", "count exchange", "wait", "dispatch rows", "experts", "combine rows",
                "combine", "combine bwd", "combine rows bwd", "wait bwd", "experts bwd", "dispatch rows bwd",
                "sort/pack + route bwd"]


def expect(condition, message):
    if not condition:
        print(f"FAIL: {message}")
        sys.exit(1)


def lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def layer_hot(path):
    # 2 ranks, 64 tokens each, top-2, width 16, hot:0:1.0: every choice goes to rank 0, which
    # receives every token (moe.dispatch per_rank: a token's 2 choices there travel as one
    # row), 128 rows, twice the mean of 64. Only rank 1's 64 tokens cross a link, once each:
    # half a row per token, 64 x 16 x 4 bytes over 2 ranks each way.
    [r] = lines(path)
    expect(r["rows_received_max_over_mean"] == 2.0, f"busiest over mean {r['rows_received_max_over_mean']}, expected 2")
    expect(r["wire_rows_per_token_each_way"] == 0.5, f"rows per token {r['wire_rows_per_token_each_way']}")
    expect(r["other_ranks_per_token_from_routing"] == 0.5,
           f"other ranks per token {r['other_ranks_per_token_from_routing']}")
    expect(r["bytes_per_rank_each_way"] == 64 * 16 * 4 / 2, f"bytes {r['bytes_per_rank_each_way']}")
    expect([p["phase"] for p in r["phases"]] == LAYER_PHASES, f"phases {[p['phase'] for p in r['phases']]}")
    expect(set(r["contenders"]) == {"moe", "dense", "raw_alltoall", "moe_phased"}, f"contenders {set(r['contenders'])}")
    expect(all(len(c["seconds"]) == 3 for c in r["contenders"].values()), "3 timed reps per contender")
    expect(r["contenders"]["moe"]["slowest_rank_counts"] and sum(r["contenders"]["moe"]["slowest_rank_counts"]) == 3,
           "every rep names its slowest rank")


def step(path):
    [r] = lines(path)
    names = [c["category"] for c in r["categories"]]
    expect(names == ["compute", "exchange", "wait", "gradient sync", "optimizer", "bookkeeping"], f"categories {names}")
    expect(len(r["step"]["seconds"]) == 2, "2 timed steps")
    expect(all(c["mean_over_ranks_s"] > 0 for c in r["categories"] if c["category"] != "wait"), "every category timed")


def step_twin(path):
    # configs/tiny.yaml: top-2 of experts 16 wide plus 1 shared expert, so the dense twin's
    # d_ff is (2 + 1) x 16 = 48; 2 rounds of 2 timed steps each; no barriers, so no "wait".
    [r] = lines(path)
    expect(r["dense_twin"]["d_ff"] == 48, f"dense twin d_ff {r['dense_twin']['d_ff']}, expected 48")
    expect(len(r["step"]["seconds"]) == 4 and len(r["dense_twin"]["step"]["seconds"]) == 4, "2 rounds x 2 steps each")
    expect(r["barriers"] is False, "--no-barriers recorded")
    wait = [c for c in r["categories"] if c["category"] == "wait"][0]
    expect(wait["mean_over_ranks_s"] == 0, f"no barriers, yet {wait['mean_over_ranks_s']} s of waiting")
    ratio = r["step"]["median_s"] / r["dense_twin"]["step"]["median_s"]
    expect(abs(r["moe_over_dense"] - ratio) < 1e-12, f"ratio {r['moe_over_dense']} is not the medians' {ratio}")
    dense_exchange = [c for c in r["dense_twin"]["categories"] if c["category"] == "exchange"][0]
    expect(dense_exchange["mean_over_ranks_s"] == 0, "the dense twin has no expert exchange")


def sweep(folder):
    # tests/e2e/sweep_tiny.yaml: ranks [1, 2] x routing [uniform, hot:0:1.0] = 4 points.
    folder = Path(folder)
    records = lines(folder / "results.jsonl")
    expect(len(records) == 4, f"{len(records)} points, expected 4")
    expect({(r["ranks"], r["routing"]) for r in records} == {(1, "uniform"), (2, "uniform"), (1, "hot:0:1.0"),
                                                               (2, "hot:0:1.0")}, "the grid's points")
    csv_rows = (folder / "results.csv").read_text().splitlines()
    expect(len(csv_rows) == 5, f"results.csv has {len(csv_rows)} lines, expected a header and 4 rows")
    for name in ("results.md", "phases.png", "scaling.png", "moe_vs_dense.png"):
        expect((folder / name).stat().st_size > 0, f"{name} missing or empty")
    expect((folder / "phases.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "phases.png is a PNG")


def projection(path):
    # --ranks 8,64: two points, EP = gcd(ranks, 128 experts) = 8 and 64.
    r = json.loads(Path(path).read_text())
    expect([p["ranks"] for p in r["points"]] == [8, 64], "projected sizes")
    expect([p["expert_parallel"] for p in r["points"]] == [8, 64], "EP is gcd(ranks, experts)")
    expect(all(0 < p["exchange_share"] < 1 for p in r["points"]), "exchange share in (0, 1)")
    expect(r["points"][0]["weak_scaling_efficiency"] == 1.0, "efficiency is relative to the first size")
    expect(len(r["assumptions"]) > 0, "assumptions are carried into the projection")


def params_with_config(path):
    # calibrate given configs/tiny.yaml: the dense part rated on that model's own step, over
    # tiny's 8 sequences of 24 tokens split between the 2 ranks.
    r = json.loads(Path(path).read_text())
    dense = r["calibrated"]["dense_step"]
    expect(dense["config"].endswith("configs/tiny.yaml"), "the config is recorded")
    expect(dense["tokens_per_rank"] == 4 * 24, "one rank's slice of a step: 4 sequences of 24")
    expect(dense["step_compute_s"] > 0, "the model's step was timed")
    expect(dense["dense_rate_from"] in ("the config's model",
                                        "dense FFN (the config's MoE layers are nearly all of it)"),
           "says where the dense rate came from")
    expect(r["compute"]["dense_flops_per_s"] > 0, "a dense rate")


def layer_hierarchy(folder):
    # 2 virtual hosts x 2 ranks, moe.exchange auto: hierarchical, said why. uniform.jsonl,
    # top-4 of 8 experts: the network carries one row per token and other host, which the
    # routing counts independently (to rounding of the mean), in one message per rank per
    # exchange (hosts - 1; the flat exchange sends to both ranks of the other host).
    # hot.jsonl, hot:0:1.0: every choice is expert 0, on host 0, so only host 1's tokens cross,
    # once each: half a row per token, and host 0's ranks send nothing.
    [uniform] = lines(Path(folder) / "uniform.jsonl")
    [hot] = lines(Path(folder) / "hot.jsonl")
    for r in (uniform, hot):
        expect(r["exchange"] == "hierarchical", f"exchange {r['exchange']}")
        expect(r["exchange_why"] == "hierarchical (auto): 2 host(s) x 2 EP rank(s)", f"why: {r['exchange_why']}")
        expect(r["hosts"] == 2 and r["ranks_per_host"] == 2, f"layout {r['hosts']} x {r['ranks_per_host']}")
    expect(abs(uniform["network_rows_per_token_each_way"] - uniform["other_hosts_per_token_from_routing"]) < 1e-9,
           f"network rows {uniform['network_rows_per_token_each_way']} vs other hosts "
           f"{uniform['other_hosts_per_token_from_routing']}")
    expect(0.5 < uniform["other_hosts_per_token_from_routing"] < 1.0, "top-4 of 8 reaches the other host often")
    expect(uniform["network_messages_per_rank_per_exchange"] == 1.0,
           f"messages {uniform['network_messages_per_rank_per_exchange']}")
    expect(hot["network_rows_per_token_each_way"] == 0.5, f"hot rows {hot['network_rows_per_token_each_way']}")
    expect(hot["network_messages_per_rank_per_exchange"] == 0.5,
           f"hot messages {hot['network_messages_per_rank_per_exchange']}")


if __name__ == "__main__":
    {"layer_hot": layer_hot, "step": step, "step_twin": step_twin, "sweep": sweep, "projection": projection,
     "params_with_config": params_with_config, "layer_hierarchy": layer_hierarchy}[sys.argv[1]](sys.argv[2])
    print("ok")
