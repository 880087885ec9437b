"""Write docs/benchmarks.md from the JSON results under bench/results/.

The page is generated, never edited by hand: ``python -m bench.report`` rewrites it after
``make bench``, and tests/docs/test_benchmarks_doc.py fails when the committed page differs from
what this script makes of the committed results. Each section reads one results file; the prose
around the tables (what a benchmark measures, on what data) is kept here with the tables it
explains. Output is a pure function of the results: no clock, no environment.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
Results = Mapping[str, Any]


# -- number formats ---------------------------------------------------------------------------


def ms(value: float | None) -> str:
    """Format milliseconds with about three significant digits."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def pct(value: float, decimals: int = 2) -> str:
    return f"{value * 100:.{decimals}f}%"


def num(value: float) -> str:
    return f"{value:,.0f}"


def usd(value: float) -> str:
    return f"${value:.2f}"


def met(flag: bool) -> str:
    return "yes" if flag else "**no**"


def heading(title: str, module: str, results: str) -> list[str]:
    """Return a section's title and the command that writes its results."""
    return [f"## {title}", "", f"`python -m bench.{module}` → `bench/results/{results}.json`.", ""]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Return a Markdown table of ``rows`` under ``header``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def load(results: Path) -> dict[str, Results]:
    """Return every results file by stem (``pager`` for pager.json)."""
    return {
        p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(results.glob("*.json"))
    }


# -- sections ---------------------------------------------------------------------------------


def targets(r: Mapping[str, Results]) -> list[str]:
    """The targets the issues set, with what was measured."""
    pager, locomo, diff, web = r["pager"], r["locomo"], r["diff"], r["web"]
    paging, imp = r["paging"], r["import"]
    s2 = pager["sizes"][2]
    bm25 = s2["bm25_top10"]
    recall = locomo["runs"]["defaults"]["recall"]["4000"]
    diff_ms = diff["scenarios"]["next-turn"]["diff"]["p50_ms"]
    t, pt = web["targets"], paging["targets"]
    ours = paging["policies"]["ours"]
    rss, ratio = (
        imp["targets"][k] for k in ("peak_rss_at_most_500_mb", "store_at_most_3x_transcript")
    )
    g = pager["goals"]

    def timed(label: str, name: str) -> list[str]:
        goal = g[name]
        if goal["value"] is None:
            return [label, f"≤ {ms(goal['target'])} ms", "not run", "—"]
        shown = f"{ms(goal['value'])} ms ({goal['ratio_to_reference']:.4f} × rank_bm25)"
        return [label, f"≤ {ms(goal['target'])} ms", shown, met(goal["met"])]

    slopes = [g[f"page_loglog_slope_{b}"]["value"] for b in ("16k", "claude-sonnet-4-6")]
    rows = [
        timed("page at 1,000 blocks (16k budget)", "page_1k_p50_ms"),
        timed("page + pack at 10,000 blocks (full budget)", "page_and_pack_10k_full_p50_ms"),
        timed("page + pack at 100,000 blocks (16k budget)", "page_and_pack_100k_16k_p50_ms"),
        timed("page + pack at 100,000 blocks (full budget)", "page_and_pack_100k_full_p50_ms"),
        timed("cold first page at 100,000 blocks", "cold_first_page_100k_ms"),
        ["page time against session size (every block a candidate)", "log-log slope ≤ 1",
         f"{slopes[0]} (16k), {slopes[1]} (full)",
         met(all(s is not None and s <= 1.0 for s in slopes))],
        ["memory growth across 1,000 pages (10,000 blocks)",
         f"≤ {g['no_growth_across_1000_pages_mb']['target']} MB",
         f"{g['no_growth_across_1000_pages_mb']['value']} MB",
         met(bool(g["no_growth_across_1000_pages_mb"]["met"]))],
        ["resident memory per 100,000 blocks", "reported",
         f"{g['rss_per_100k_blocks_mb']['value']} MB", "—"],
        ["BM25 top-10 at 100,000 blocks vs rank_bm25", f"≥ {pager['targets']['bm25_speedup']}x, same scores",
         f"{bm25['speedup_p50']:.0f}x, largest relative score difference {bm25['max_relative_score_difference']}",
         met(bm25["speedup_p50"] >= pager["targets"]["bm25_speedup"])],
        ["LoCoMo evidence recall at 4,000 tokens", f"≥ {locomo['target']['4000']}",
         f"{recall:.3f}", met(recall >= locomo["target"]["4000"])],
        ["diff of two 200,000-token requests", f"≤ {diff['target_ms']} ms", f"{ms(diff_ms)} ms",
         met(diff_ms <= diff["target_ms"])],
        ["turn page, 5,000 blocks / 200k tokens", f"≤ {t['turn_page']['target_ms']} ms",
         f"{ms(t['turn_page']['p50_ms'])} ms", met(t["turn_page"]["met"])],
        ["compare page, two 200k-token turns", f"≤ {t['compare_page']['target_ms']} ms",
         f"{ms(t['compare_page']['p50_ms'])} ms", met(t["compare_page"]["met"])],
        ["sessions list, 10,000 sessions", f"≤ {t['sessions_list']['target_ms']} ms",
         f"{ms(t['sessions_list']['p50_ms'])} ms", met(t["sessions_list"]["met"])],
        ["demand paging: cumulative input tokens vs full history", "−40%",
         f"−{pct(pt['reduction_at_least_40pct']['value'], 1)}", met(pt["reduction_at_least_40pct"]["met"])],
        ["demand paging: hard miss rate", "≤ 1%", pct(pt["hard_miss_rate_at_most_1pct"]["value"]),
         met(pt["hard_miss_rate_at_most_1pct"]["met"])],
        ["demand paging: total miss rate vs age-based", "below",
         f"{pct(ours['miss_rate']['miss_rate'])} vs {pct(pt['miss_rate_below_age_based']['age_based'])}",
         met(pt["miss_rate_below_age_based"]["met"])],
        ["demand paging: budget violations, identical hashes", "0, 100%",
         f"{pt['zero_budget_violations']['value']}, {pct(pt['identical_hashes_100pct']['value'], 0)}",
         met(pt["zero_budget_violations"]["met"] and pt["identical_hashes_100pct"]["met"])],
        [f"import one session ({rss['at']}): peak memory", "≤ 500 MB", f"{rss['value']} MB", met(rss["met"])],
        [f"import one session ({ratio['at']}): store size", "≤ 3x transcript", f"{ratio['value']}x",
         met(ratio["met"])],
    ]  # fmt: skip
    return ["## Targets", "", *table(["what", "target", "measured (p50)", "met"], rows)]


def pager(r: Mapping[str, Results]) -> list[str]:
    d = r["pager"]
    rows = []
    for size in d["sizes"]:
        small, full = size["16k"], size["claude-sonnet-4-6"]
        rows.append([
            num(size["blocks"]), num(size["edges"]),
            f"{ms(small['page']['p50_ms'])} / {ms(full['page']['p50_ms'])}",
            f"{ms(small['pack']['p50_ms'])} / {ms(full['pack']['p50_ms'])}",
            f"{ms(small['page_and_pack']['p50_ms'])} / {ms(small['page_and_pack']['p99_ms'])}",
            f"{ms(full['page_and_pack']['p50_ms'])} / {ms(full['page_and_pack']['p99_ms'])}",
            f"{ms(small['cold_first_page_ms'])} / {ms(full['cold_first_page_ms'])}",
            " / ".join(ms(x["cold_first_page_new_process_ms"])
                       if "cold_first_page_new_process_ms" in x else "–" for x in (small, full)),
            f"{num(small['selected'])} / {num(full['selected'])}",
            ms(size["reference_ms"]), f"{size['rss']['per_100k_blocks_mb']} MB",
        ])  # fmt: skip
    bm25 = [
        [num(s["blocks"]), ms(s["bm25_top10"]["ours"]["p50_ms"]),
         ms(s["bm25_top10"]["rank_bm25"]["p50_ms"]), f"{s['bm25_top10']['speedup_p50']}x",
         str(s["bm25_top10"]["max_relative_score_difference"])]
        for s in d["sizes"]
    ]  # fmt: skip
    return [
        *heading("Pager and packer", "bench_pager", "pager"),
        "Sessions grown from the tau-bench airline recordings (real block sizes); budgets "
        "claude-sonnet-4-6's full input budget (187,712 tokens) and 16,000. Milliseconds, "
        "steady state, with the cyclic garbage collector paused during page and pack. Every "
        "block of the session is a candidate at both budgets. The reference column is a fixed "
        "computation timed in the same process on the same corpus (rank_bm25's scores for one "
        "query), so runs on different days compare as ratios. The first page after opening the "
        "store is timed twice: reopened in the benchmark's process, and in a new process (its "
        "memory all untouched, as a server or a CLI just started finds it; interpreter start, "
        "imports and the tokenizer's load not timed). Where a page's time goes: "
        "`python -m bench.profile_pager` (pyinstrument, `bench/results/pager_profile_*.txt`).",
        "",
        *table(
            [
                "blocks",
                "edges",
                "page p50 (16k / full)",
                "pack p50 (16k / full)",
                "page + pack p50 / p99 (16k)",
                "page + pack p50 / p99 (full)",
                "first page, store reopened (16k / full)",
                "first page, new process (16k / full)",
                "selected (16k / full)",
                "reference: rank_bm25 get_scores",
                "RSS per 100,000 blocks",
            ],
            rows,
        ),  # fmt: skip
        "",
        "BM25 top-10 against `rank_bm25.BM25Okapi` on the same terms (p50 ms):",
        "",
        *table(
            ["blocks", "ours", "rank_bm25", "speedup", "largest relative score difference"], bm25
        ),
    ]


def locomo(r: Mapping[str, Results]) -> list[str]:
    d = r["locomo"]
    budgets = ("2000", "4000", "8000")

    def weights(run: Mapping[str, Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(run["weights"].items()) if v)

    rows = [
        [f"`{name}` ({weights(run)})", *(f"{run['recall'][b]:.3f}" for b in budgets)]
        for name, run in sorted(d["runs"].items())
    ]
    rows += [
        [f"{name.replace('_', ' ')} (from the data's README)", *(f"{base[b]:.2f}" for b in budgets)]
        for name, base in sorted(d["baselines_from_data_readme"].items())
    ]
    runs = d["runs"]["defaults"]
    return [
        *heading("LoCoMo evidence recall", "bench_locomo", "locomo"),
        f"{len(runs['files'])} conversations, {num(d['questions'])} questions, "
        f"{num(runs['evidence_turns'])} evidence turns, tokenizer {d['tokenizer']}, no model "
        "download. The share of evidence turns the pager selects at each budget (tokens). "
        "`defaults` is the shipped default stack; `first_defaults` the first shipped weights. "
        "LoCoMo is not shipped: the benchmark takes its folder as an argument and is skipped "
        "without it.",
        "",
        *table(["stack (weights)", *(f"{num(int(b))} tokens" for b in budgets)], rows),
    ]


def diff(r: Mapping[str, Results]) -> list[str]:
    d = r["diff"]
    rows = [
        [f"`{name}`", num(s["tokens_a_cl100k"]), num(s["tokens_b_cl100k"]),
         f"{ms(s['diff']['p50_ms'])} / {ms(s['diff']['p99_ms'])}",
         ms(s["stdlib_difflib_ms"]), s["cache_verdict"], f"`{s['first_divergent_unit']}`"]
        for name, s in sorted(d["scenarios"].items())
    ]  # fmt: skip
    return [
        *heading("Turn diff", "bench_diff", "diff"),
        f"`llm386 diff` on pairs of requests; target {d['target_ms']} ms for two "
        "200,000-token requests. `stdlib difflib` is the same text diff done by Python's "
        "difflib, where it was measured.",
        "",
        *table(
            [
                "scenario",
                "tokens A",
                "tokens B",
                "diff p50 / p99 ms",
                "stdlib difflib ms",
                "cache verdict",
                "first divergent unit",
            ],
            rows,
        ),  # fmt: skip
    ]


WEB_LABELS = {
    "turn_page": "turn page",
    "compare_page": "compare page (two such turns)",
    "turn_section_first_page": "a page of a section's blocks (first)",
    "turn_section_last_page": "a page of a section's blocks (last)",
    "turn_omitted_first_page": "the omitted candidates, first page",
    "turn_messages_first_page": "chat messages, first page",
    "sessions_list": "sessions list",
    "sessions_list_failing_by_tokens": "sessions list, failing, sorted by tokens",
    "sessions_list_page_150": "sessions list, page 150",
    "sessions_list_word_search": "sessions list, searching words in blocks",
    "sessions_list_prompt_hash_search": "sessions list, searching a prompt hash",
    "sessions_list_after_a_write": "sessions list right after a write (includes the write)",
    "sessions_list_first_request": "sessions list, first request of a new process",
    "block_page_used_by_both_big_turns": "block page listing the turns that used it",
}


def page_rows(figures: Mapping[str, Any], labels: Mapping[str, str]) -> list[list[str]]:
    """Return (label, p50, p99 or max) rows of page timings, in ``labels`` order, others last."""
    order = list(labels)
    names = sorted(figures, key=lambda n: order.index(n) if n in order else len(order))
    return [[labels.get(n, n), ms(figures[n]["p50_ms"]),
             ms(figures[n].get("p99_ms", figures[n].get("max_ms")))] for n in names]  # fmt: skip


def web(r: Mapping[str, Results]) -> list[str]:
    d = r["web"]
    rows = page_rows(d["figures"], WEB_LABELS)
    return [
        *heading("Web pages", "bench_web", "web"),
        "Django test client, whole request including middleware. Data: a turn of "
        f"{num(d['big_turn_blocks'])} blocks with a {d['turn_request_bytes'] / 1e6:.1f} MB "
        f"(~200,000-token) request, and {num(d['sessions'])} sessions. Milliseconds (the "
        "first-request row gives the slowest of its runs instead of p99).",
        "",
        *table(["page", "p50", "p99"], rows),
    ]


TRIAGE_LABELS = {
    "triage_list": "triage list, first page",
    "triage_list_errored": "triage list, errored turns only",
    "triage_list_late_page": "triage list, its last page",
    "triage_list_after_a_flag": "triage list right after a flag or unflag (includes the write)",
    "triage_list_first_request": "triage list, first request of a new process",
}


def client_pages(
    d: Results, heads: tuple[str, str, str], data: str, target: str, labels: Mapping[str, str]
) -> list[str]:
    """Return a section of page timings through Django's test client: its heading (title,
    module, results), what data it ran on, the first target's verdict and the table."""
    t = d["targets"][next(iter(d["targets"]))]
    return [
        *heading(*heads),
        f"Django test client, whole request. Data: {data}. Target: {target} in "
        f"{ms(t['target_ms'])} ms (met: {met(t['met'])}). Milliseconds (a row timed over a few "
        "runs, each after a change or a reset, gives the slowest of them instead of p99).",
        "",
        *table(["page", "p50", "p99"], page_rows(d["figures"], labels)),
    ]


def triage(r: Mapping[str, Results]) -> list[str]:
    d = r["triage"]
    return client_pages(d, ("Triage list", "bench_triage", "triage"),
                        f"{num(d['sessions'])} sessions, {num(d['rows'])} listed turns",
                        "the first page", TRIAGE_LABELS)  # fmt: skip


DASHBOARD_LABELS = {
    "dashboard_all": "dashboard, all time, by model (six charts)",
    "dashboard_by_source": "dashboard, all time, by source",
    "dashboard_csv": "one chart's CSV (cost, all time)",
    "dashboard_after_a_new_call": "dashboard right after a new call (the index catches up)",
    "dashboard_after_index_dropped": "dashboard after its index was dropped (rebuilt)",
}


def dashboard(r: Mapping[str, Results]) -> list[str]:
    d = r["dashboard"]
    return client_pages(d, ("Dashboard", "bench_dashboard", "dashboard"),
                        f"{num(d['sessions'])} sessions, {num(d['calls'])} calls",
                        "all time", DASHBOARD_LABELS)  # fmt: skip


def replay(r: Mapping[str, Results]) -> list[str]:
    d = r["replay"]
    labels = {
        "tau-bench": "largest tau-bench turn re-paged for claude-sonnet-4-6",
        "agent": "30-message sample-agent chat, last call",
    }
    rows = []
    for key, label in labels.items():
        s = d[key]
        rows.append([
            label, f"{s['request_bytes'] / 1000:.1f} KB", ms(s["replay_total"]["p50_ms"]),
            ms(s["adapter_send_in_replay"]["p50_ms"]),
            f"**{ms(s['replay_overhead']['p50_ms'])} / {ms(s['replay_overhead']['p99_ms'])}**",
            f"{ms(s['repage']['p50_ms'])} / {ms(s['repage']['p99_ms'])}",
            ms(s["offline_replay"]["p50_ms"]),
        ])  # fmt: skip
    return [
        *heading("Replay and re-page", "bench_replay", "replay"),
        f"Loopback Anthropic-compatible server on 127.0.0.1, {d['runs']} runs. Overhead is "
        "`replay()` wall time minus the adapter's own latency for the HTTP call: loading the "
        "record and bytes, re-hashing them, recording the new trace and diffing the outputs. "
        "About 45 ms of every loopback send is a TCP delayed-ACK stall in the fake server on "
        "keep-alive connections (a fresh connection takes 0.4 ms).",
        "",
        *table(
            [
                "turn",
                "request",
                "replay total p50",
                "adapter send p50",
                "replay overhead p50 / p99",
                "re-page p50 / p99",
                "offline replay p50",
            ],
            rows,
        ),  # fmt: skip
    ]


def _paging_row(name: str, p: Mapping[str, Any], identical: float) -> list[str]:
    cost = next(
        v for k, v in sorted(p["estimated_input_cost_usd"].items()) if k.startswith("claude")
    )
    m, n = p["miss_rate"], p["miss_rate_numeric_tokens"]
    return [
        name, num(p["cumulative_input_tokens"]), f"−{pct(p['reduction_vs_full'], 1)}" if p["reduction_vs_full"] else "0.0%",
        num(p["peak_tokens"]), str(p["budget_violations"]),
        f"{usd(cost['uncached_usd'])} / {usd(cost['cached_usd'])}",
        f"{pct(m['miss_rate'])} ({pct(m['soft_miss_rate'])} / {pct(m['hard_miss_rate'])})",
        f"{pct(n['miss_rate'])} / {pct(n['hard_miss_rate'])}",
        f"{p['faults']['recall']} / {p['faults']['repeat']}",
        f"{p['fault_round_trips']} ({num(p['fault_round_trip_tokens'])})", pct(identical, 0),
    ]  # fmt: skip


def paging(r: Mapping[str, Results]) -> list[str]:
    d = r["paging"]
    same = d["determinism"]["per_policy"]
    order = ("full", "last-8-user-turns", "age-based", "ours")
    rows = [
        _paging_row(f"**{k}**" if k == "ours" else k, d["policies"][k], same[k]["identical_rate"])
        for k in order
    ]
    rows += [_paging_row(k, v, same[k]["identical_rate"]) for k, v in sorted(d["variants"].items())]
    share = d["full_history_composition"]["share_by_category"]
    composition = ", ".join(
        f"{k} {pct(v, 1)}" for k, v in sorted(share.items(), key=lambda kv: -kv[1]) if v
    )
    ours = d["policies"]["ours"]
    return [
        *heading("Demand paging", "bench_paging", "paging"),
        f"Replays every session of the tau-bench airline data ({d['dataset']['session_count']} "
        f"GPT-4o sessions, {num(ours['turns'])} model calls) turn by turn, with no model calls: "
        "each assistant message is a call whose input is every message before it plus the tool "
        f"definitions. Budget {num(d['budget'])} tokens, tokenizer `{d['tokenizer']}`. Token "
        "counts are block bodies without message framing. Cost: claude-sonnet list prices, "
        "with one cache breakpoint at the end of every request and no expiry (the section "
        "below prices caching by the provider's rules). Hashes: the share of packed requests identical in two fresh processes "
        f"(`PYTHONHASHSEED` {' and '.join(map(str, d['determinism']['pythonhashseeds']))}). "
        "docs/paging.md defines the policies, misses and faults.",
        "",
        *table(
            [
                "policy",
                "cumulative input tokens",
                "vs full",
                "peak",
                "budget violations",
                "cost no cache / cache",
                "miss rate total (soft / hard)",
                "numeric-token miss total / hard",
                "faults recall / repeat",
                "fault round trips (tokens)",
                "identical hashes",
            ],
            rows,
        ),  # fmt: skip
        "",
        f"Full history by category: {composition}. Removing every byte of waste (unused tool "
        "schemas, stale tool results, duplicates) outright would save at most "
        f"{pct(d['full_history_composition']['waste_share'], 1)}.",
        "",
        f"The packer's own chat count for ours: {num(ours['packer_chat_tokens']['cumulative'])} "
        f"cumulative, peak {num(ours['packer_chat_tokens']['peak'])} (with message framing). "
        "gpt-4o cost for ours: "
        f"{usd(ours['estimated_input_cost_usd']['gpt-4o']['uncached_usd'])} / "
        f"{usd(ours['estimated_input_cost_usd']['gpt-4o']['cached_usd'])}. "
        f"Replay took {d['replay_seconds']} s, plus two fresh processes for the hash check.",
    ]


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _cache_row(name: str, p: Mapping[str, Any], model: str, identical: float) -> list[str]:
    cost, gpt = p["cost_with_caching"][model], p["cost_with_caching"]["gpt-4o"]
    strict, old = p["strict_miss_rate"], p["miss_rate"]
    lo, hi = strict["miss_rate_95ci"]
    return [
        name, num(p["cumulative_input_tokens"]), f"−{pct(p['reduction_vs_full'], 1)}",
        usd(cost["cost_with_caching_usd"]), usd(cost["cost_without_caching_usd"]),
        usd(gpt["cost_with_caching_usd"]), num(cost["cache_write_tokens"]),
        f"{pct(strict['miss_rate'])} [{pct(lo)}–{pct(hi)}] / {pct(strict['hard_miss_rate'])} "
        f"({strict['soft_misses'] + strict['hard_misses']}, {strict['hard_misses']} of {num(strict['references'])})",
        f"{pct(old['miss_rate'])} / {pct(old['hard_miss_rate'])}",
        str(p["budget_violations"]), pct(identical, 0),
    ]  # fmt: skip


def paging_cache(r: Mapping[str, Results]) -> list[str]:
    """Issue 15: cost with prompt caching, the baselines, the strict miss metric, per budget."""
    d = r["paging"]
    if "issue15" not in d:
        return []
    i15 = d["issue15"]
    model = i15["headline_model"]
    price, rules = i15["prices"][model], i15["cache_rules"][model]
    runs = {str(d["budget"]): d, **d["other_budgets"]}
    out = [
        "## Demand paging with prompt caching", "",
        "`python -m bench.bench_paging` → `bench/results/paging.json` (`issue15`, and each budget's "
        "`policies`). Every request is priced against the cache its session's earlier requests "
        f"left, by the provider's rules: {model} at ${price['input_usd_per_mtok']}/Mtok input "
        f"({price['source']}, {price['as_of']}), cache write {price['cache_write']}x, read "
        f"{price['cache_read']}x, up to {rules['max_breakpoints']} breakpoints, minimum "
        f"{num(rules['min_cacheable'])} tokens, {rules['ttl_seconds']:g} s TTL ({rules['source']}, "
        f"{rules['as_of']}); gpt-4o with automatic caching in 128-token steps past 1,024. "
        f"Assumptions: {i15['assumptions']}. Strict miss: a reference is a hit only when a "
        "tool-result occurrence of the identifier is resident in full, whenever one exists; "
        "95% Wilson interval in brackets, then (misses, hard misses of references).", "",
    ]  # fmt: skip
    header = ["policy", "cumulative input tokens", "vs full", f"{model} cost with cache",
              "without cache", "gpt-4o with cache", "cache-write tokens",
              "strict miss total [95%] / hard (counts)", "old miss total / hard",
              "budget violations", "identical hashes"]  # fmt: skip
    for budget, run in runs.items():
        same = run["determinism"]["per_policy"]
        rows = [
            _cache_row(f"**{k}**" if k == "cache-aware" else k, v, model, same[k]["identical_rate"])
            for k, v in run["policies"].items()
        ]
        t = i15["by_budget"][budget]["targets"]
        target_rows = [
            [k.replace("_", " "), ", ".join(f"{n} {_fmt(x)}" for n, x in v.items() if n != "met"),
             met(v["met"])]
            for k, v in t.items()
        ]  # fmt: skip
        cats = i15["by_budget"][budget]["cache_aware_usd_by_category"]
        where = ", ".join(
            f"{k} {usd(v)}" for k, v in sorted(cats.items(), key=lambda kv: -kv[1]) if v
        )
        frontier = [f"{f['policy']} ({usd(f['cost_with_caching_usd'])}, {pct(f['strict_miss_rate'])})"
                    for f in i15["by_budget"][budget]["frontier"] if f["on_frontier"]]  # fmt: skip
        # The frontier counts only policies that kept the budget (zero violations).
        out += [
            f"### Budget {num(int(budget))}",
            "",
            *table(header, rows),
            "",
            *table(["target (cache-aware)", "measured", "met"], target_rows),
            "",
            f"Where cache-aware's {model} dollars go: {where}. Frontier of cost with caching "
            f"against strict miss (no cheaper policy misses less): {'; '.join(frontier)}.",
            "",
            *_where_cost_goes(i15["by_budget"][budget]),
        ]
    return out


def _where_cost_goes(b: Mapping[str, Any]) -> list[str]:
    """The dollars of each policy by billing class, and over the sessions the stubs-only
    baseline keeps within the budget against the rest (absent from older results)."""
    classes, split = (
        b.get("usd_by_policy_category_and_billing_class"),
        b.get("cost_split_by_baseline_budget"),
    )
    if not classes or not split:
        return []
    rows = [
        [name, usd(c["usd_by_billing_class"]["cache_read"]),
         usd(c["usd_by_billing_class"]["cache_write"]), usd(c["usd_by_billing_class"]["plain_input"]),
         usd(split[name]["within_budget_usd"]) if name in split else "—",
         usd(split[name]["over_budget_usd"]) if name in split else "—"]
        for name, c in classes.items()
    ]  # fmt: skip
    header = ["policy", "cache reads", "cache writes", "plain input",
              f"{split['sessions_within_budget']} sessions stubs-only keeps in budget",
              f"{split['sessions_over_budget']} sessions it does not"]  # fmt: skip
    return [*table(header, rows), ""]


def importing(r: Mapping[str, Results]) -> list[str]:
    d = r["import"]
    rows = [
        [num(run["messages"]), num(run["turns"]), f"{run['transcript_bytes'] / 1e6:.1f} MB",
         f"{run['peak_rss_mb']} MB", f"{run['store_bytes'] / 1e6:.1f} MB", f"{run['store_ratio']}x",
         f"{run['seconds']} s"]
        for run in d["runs"]
    ]  # fmt: skip
    slope = d["log_log_slope_vs_transcript_bytes"]
    return [
        *heading("Import", "bench_import", "import"),
        f"`llm386 import` of one long session at four sizes: {d['note']}.",
        "",
        *table(
            ["messages", "turns", "transcript", "peak RSS", "store", "store / transcript", "time"],
            rows,
        ),  # fmt: skip
        "",
        f"Log-log slopes against transcript size: peak memory {slope['peak_rss_mb']}, store "
        f"size {slope['store_bytes']}, time {slope['seconds']} (1 would be linear).",
    ]


def store(r: Mapping[str, Results]) -> list[str]:
    d = r["store"]
    size = num(d["session_size"])
    rows = [
        ["batched put (1,000 per transaction)", f"{num(d['put_batched_1000_per_s'])} blocks/s"],
        ["get", f"{num(d['get_per_s'])} gets/s"],
        ["durable put, one per transaction (fsync)", f"{num(d['put_one_by_one_durable_per_s'])} puts/s"],
        [f"list a page of 100 at offset 90,000 of {size}", f"{ms(d['list_page_of_100_at_offset_90k']['p50_ms'])} ms"],
        [f"list all {size} entries without bodies", f"{ms(d['list_session_100k_refs_without_bodies']['p50_ms'])} ms"],
        [f"list all {size} entries with bodies", f"{ms(d['list_session_100k_entries_with_bodies']['p50_ms'])} ms"],
    ]  # fmt: skip
    return [
        *heading("Block store", "bench_store", "store"),
        f"LMDB on local disk, {d['body_bytes']}-byte bodies, one session of {size} entries (p50).",
        "",
        *table(["operation", "rate or p50"], rows),
    ]


def traces(r: Mapping[str, Results]) -> list[str]:
    d = r["traces"]
    labels = {
        "get_by_prefix": "get a record by call-id prefix",
        "list_newest_50": "list the newest 50",
        "list_flagged_page_50_at_offset_1000": "list 50 flagged at offset 1,000",
        "list_one_session_turns": "list one session's turns",
        "session_stats_page_of_50": "per-session aggregates, a page of 50",
        "count_all_and_flagged": "count all and flagged",
    }
    rows = [[label, ms(d[key]["p50_ms"])] for key, label in labels.items()]
    return [
        *heading("Trace store", "bench_traces", "traces"),
        f"{num(d['records_total'])} records (the {num(d['demo_turns'])} demo turns, imported in "
        f"{d['demo_import_seconds']} s, and more); recording in batches runs at "
        f"{num(d['record_many_per_s'])} records/s.",
        "",
        *table(["operation", "p50 ms"], rows),
    ]


def kv_engines(r: Mapping[str, Results]) -> list[str]:
    d = r["kv_engines"]
    ratio = d["postgresql_over_lmdb"]
    rows = [
        [name.removesuffix("_per_s").replace("_", " "), num(d["lmdb"][name]),
         num(d["postgresql"][name]), f"{ratio[name]:.3f}"]
        for name in sorted(d["lmdb"])
    ]  # fmt: skip
    return [
        *heading("Key-value engines: LMDB and PostgreSQL", "bench_kv", "kv_engines"),
        f"{num(d['keys'])} keys of {d['value_bytes']} bytes; both engines durable, PostgreSQL "
        "over a unix socket on the same machine (operations per second).",
        "",
        *table(["operation", "LMDB /s", "PostgreSQL /s", "PostgreSQL ÷ LMDB"], rows),
    ]


def storage(r: Mapping[str, Results]) -> list[str]:
    d = r["storage"]
    lm, pg = d["lmdb"], d["postgresql"]
    pp = [
        [f"page + pack p50 ms, {d['blocks']:,} blocks, {label} budget", ms(lm["page_and_pack"][key]["p50_ms"]),
         ms(pg["page_and_pack"][key]["p50_ms"]),
         f"{pg['page_and_pack'][key]['p50_ms'] / lm['page_and_pack'][key]['p50_ms']:.2f}"]
        for key, label in (("16k", "16k"), ("full", "full Claude"))
    ]  # fmt: skip
    imports = [["bulk import (blocks/s)", num(lm["import_blocks_per_s"]),
                num(pg["import_blocks_per_s"]),
                f"{pg['import_blocks_per_s'] / lm['import_blocks_per_s']:.2f}"]]  # fmt: skip
    if "import_blocks_per_cpu_s" in lm and "import_blocks_per_cpu_s" in pg:  # runs since 12-07
        imports.append(["bulk import (blocks per CPU-second; PostgreSQL: client + server)",
                        num(lm["import_blocks_per_cpu_s"]), num(pg["import_blocks_per_cpu_s"]),
                        f"{pg['import_blocks_per_cpu_s'] / lm['import_blocks_per_cpu_s']:.2f}"])  # fmt: skip
    return [
        "## The product on PostgreSQL and LMDB",
        "",
        "`python -m bench.bench_storage` → `bench/results/storage.json`.",
        "",
        f"One run, both backends: the {d['blocks']:,}-block tau-bench session of the pager "
        "benchmark, built with `put_many` in batches of 2,000 (index upkeep included), then "
        "paged and packed warm; the web pages are bench/bench_web.py with `--store URL`. The "
        f"PostgreSQL server: {d['server']}.",
        "",
        *table(["figure", "LMDB", "PostgreSQL", "PostgreSQL ÷ LMDB"], pp + imports),
        "",
        *target_table(d["targets"], lambda v: f"{v:,}"),
    ]


def target_table(targets: Mapping[str, Any], show: Callable[[Any], str] = str) -> list[str]:
    """Return the table of a results file's ``targets`` (name -> value, target, met)."""
    rows = [
        [name.replace("_", " "), show(t["value"]), show(t["target"]), met(bool(t["met"]))]
        for name, t in sorted(targets.items())
    ]
    return table(["target", "measured", "target", "met"], rows)


def proxy(r: Mapping[str, Results]) -> list[str]:
    d = r["proxy"]
    return [
        *heading("Capture proxy", "bench_proxy", "proxy"),
        f"The same calls direct and through `llm386 proxy` in one run ({d['note']}).",
        "",
        *target_table(d["targets"]),
    ]


def proxy_paging(r: Mapping[str, Results]) -> list[str]:
    d = r["proxy_paging"]
    cut = 1 - d["upstream_input_tokens"] / d["client_input_tokens"]
    return [
        *heading("Paging in the proxy", "bench_proxy_paging", "proxy_paging"),
        f"Recorded sessions played through `llm386 proxy --page` as their agent sent them "
        f"({d['note']}): the agent sent {num(d['client_input_tokens'])} input tokens, the "
        f"upstream received {num(d['upstream_input_tokens'])} ({cut:.1%} fewer). A paged call "
        f"took {d['paged_p50_ms']} ms at p50 against {d['plain_p50_ms']} ms unpaged "
        f"(+{d['added_p50_ms_paged_vs_unpaged']} ms).",
        *_responses_api(d.get("responses_api")),
        "",
        *target_table(d["targets"]),
    ]


def _responses_api(d: Mapping[str, Any] | None) -> list[str]:
    if not d:
        return []
    return [
        "",
        f"The same {num(d['calls'])} calls sent as Responses API calls (`input` items, function "
        f"tools): the agent sent {num(d['client_input_tokens'])} input tokens, the upstream "
        f"received {num(d['upstream_input_tokens'])} ({d['input_tokens_cut']:.1%} fewer); the "
        f"upstream bytes of two fresh paged proxies were identical for "
        f"{d['identical_upstream_bytes_across_fresh_proxies']:.0%} of the calls; a paged call took "
        f"{d['paged_p50_ms']} ms at p50 against {d['plain_p50_ms']} ms unpaged.",
    ]


def otel(r: Mapping[str, Results]) -> list[str]:
    d = r["otel"]
    rx = d.get("receiver")
    two = (f"spans ingested per second: {rx['exporters']} exporters at once, the receiver and "
           f"{rx['prepare_workers']} prepare worker (2 cores)") if rx else "spans ingested per second"  # fmt: skip
    rows = [
        [two, num(d["spans_per_s"]), f"≥ {num(d['target_spans_per_s'])}", met(bool(d["met"]))],
        ["spans per second: one exporter, one request after the other (1 core)",
         num(d.get("one_exporter_spans_per_s", d["spans_per_s"])), "", ""],
        ["model-call spans (turns) per second, one exporter", num(d["model_calls_per_s"]), "", ""],
        ["spans per second of CPU time, one exporter", num(d["spans_per_cpu_s"]), "", ""],
    ]  # fmt: skip
    return [
        "## OpenTelemetry ingest",
        "",
        "`python -m bench.bench_otel` → `bench/results/otel.json`.",
        "",
        f"{num(d['requests'])} tau-bench airline sessions as the traces an instrumented agent "
        f"exports: {num(d['spans'])} spans ({num(d['model_call_spans'])} `chat` spans carrying "
        f"the whole history so far, the rest agent and tool spans), {d['body_mb']} MB of "
        "protobuf, one request per trace, each way into a fresh LMDB store: sent by "
        "concurrent exporters to the receiver (`runtime.otel.receiver.handle`, bodies "
        "prepared by a worker process while the receiver writes), and one after the other "
        f"through `runtime.otel.ingest.ingest` ({d['seconds']} s), on 2 cores shared with "
        f"other jobs{_load_note(d)}.",
        "",
        *table(["what", "measured", "target", "met"], rows),
    ]


def _load_note(d: Mapping[str, Any]) -> str:
    """How busy the machine was during a run that recorded it (older results did not)."""
    if "machine_loaded" not in d:
        return ""
    busy = "other work was running" if d["machine_loaded"] else "nothing else was running"
    return (f" ({busy}: 1-minute load average {d['load_average_before'][0]} before the run; "
            f"the benchmark had the CPU for {d['cpu_share_of_wall']:.0%} of its wall time)")  # fmt: skip


DEMO_LABELS = {
    "new_loaders_fresh": "budget pressure, replay and experiment, captured proxy calls (fresh)",
    "new_loaders_again": "the same, loaded again (nothing added)",
    "whole_demo_fresh": "the whole demo, fresh store (tau-bench import included)",
    "whole_demo_again": "the whole demo, loaded again",
}


def demo(r: Mapping[str, Results]) -> list[str]:
    d = r["demo"]
    rows = [[label, ms(d["figures"][key]["p50_ms"]), ms(d["figures"][key]["max_ms"]),
             ms(d["targets"][key]["target_ms"]) if key in d["targets"] else "—",
             met(d["targets"][key]["met"]) if key in d["targets"] else "—"]
            for key, label in DEMO_LABELS.items()]  # fmt: skip
    return [
        *heading("Demo load", "bench_demo", "demo"),
        f"`manage.py llm386_demo`'s loaders on a fresh LMDB store ({num(d['sessions'])} "
        f"sessions), then again, {d['figures']['whole_demo_fresh']['runs']} runs. The loaders "
        "added to show budget pressure, a replay, an experiment and proxy turns are "
        f"{pct(d['new_share_of_fresh_load'], 1)} of a fresh load (median of the runs). "
        "Milliseconds.",
        "",
        *table(["what", "p50", "slowest", "target", "met"], rows),
    ]


def pager_profile(r: Mapping[str, Results]) -> list[str]:
    p = r["pager_profile"]
    rows = [[num(s["blocks"]), num(s["pages"]), ms(s["page"]["p50_ms"]), ms(s["page"]["p99_ms"]),
             f"[{s['profile']}](../bench/results/{s['profile']})"]
            for s in p["sizes"]]  # fmt: skip
    return [
        *heading("Where a page's time goes", "profile_pager", "pager_profile"),
        f"{p['benchmark']}, sampled every {p['interval_s'] * 1000:g} ms by pyinstrument "
        "(the page times are with the profiler on, so slower than the pager benchmark's). "
        "Each profile file is the call tree of those pages, for whoever speeds the pager up next.",
        "",
        *table(["blocks", "pages", "p50 ms", "p99 ms", "profile"], rows),
    ]


def ann(r: Mapping[str, Results]) -> list[str]:
    a = r["ann"]
    rows = [[num(s["blocks"]), ms(s["exact_limit512"]["p50_ms"]), ms(s["ann_limit512"]["p50_ms"]),
             ms(s["default_limit512"]["p50_ms"]), ms(s["exact_limit10"]["p50_ms"]),
             ms(s["ann_limit10"]["p50_ms"]), f"{s['recall_at_10']:.3f}",
             f"{s['recall_at_10_pool']:.3f}", f"{s['build_s']:.1f}",
             ms(s["cold_first_query_ms"]), "yes" if s["same_answers_in_another_process"] else "no"]
            for s in a["sizes"].values()]  # fmt: skip
    limit_rows = [[num(int(n)), ms(t["exact_p50_ms"]), ms(t["ann_p50_ms"]),
                   f"{t['ann_over_exact']:.2f}"]
                  for n, t in sorted(a["threshold"].items(), key=lambda item: int(item[0]))]  # fmt: skip
    target_rows = [[name.replace("_", " "), str(t.get("value", "")), met(t["met"])]
                   for name, t in a["targets"].items()]  # fmt: skip
    p = a["parameters"]
    return [
        *heading("Embedding retriever: ANN index", "bench_ann", "ann"),
        f"{a['library']}; chunks of {num(p['chunk'])} seqs grouped {p['group']} to a segment, "
        f"M {p['M']}, efConstruction {p['ef_construction']}, efSearch max(k, {p['ef_search']}). "
        "One `rank` of the embedding retriever over the bench_pager session (ms p50), with the "
        "pool limit (512) and with 10; `default` is the shipped retriever (exact below the "
        "threshold, ANN above). Recall@10 is the ANN path's top 10 against the exact scan's "
        "(ties at the cut count), asked for 10 and for 512. Build: the first query's segment "
        "graphs; cold: the first query after reopening the store (graphs read, not rebuilt). "
        "A session shorter than one chunk has no graph: there the ANN column is its exact "
        "rescoring (einsum) of every block, and `default` the matrix-vector scan.",
        "",
        *table(
            [
                "blocks",
                "exact 512",
                "ANN 512",
                "default 512",
                "exact 10",
                "ANN 10",
                "recall@10",
                "recall@10 (k 512)",
                "build s",
                "cold ms",
                "same in 2nd process",
            ],
            rows,
        ),  # fmt: skip
        "",
        "Threshold: one graph against the exact scan over the same vectors, k = 512.",
        "",
        *table(["blocks", "exact ms", "ANN ms", "ANN / exact"], limit_rows),
        "",
        *table(["target", "value", "met"], target_rows),
    ]


SECTIONS: tuple[tuple[Callable[[Mapping[str, Results]], list[str]], tuple[str, ...]], ...] = (
    (targets, ("pager", "locomo", "diff", "web", "paging", "import")),
    (pager, ("pager",)),
    (pager_profile, ("pager_profile",)),
    (ann, ("ann",)),
    (locomo, ("locomo",)),
    (diff, ("diff",)),
    (web, ("web",)),
    (triage, ("triage",)),
    (dashboard, ("dashboard",)),
    (replay, ("replay",)),
    (paging, ("paging",)),
    (paging_cache, ("paging",)),
    (importing, ("import",)),
    (store, ("store",)),
    (traces, ("traces",)),
    (kv_engines, ("kv_engines",)),
    (storage, ("storage",)),
    (proxy, ("proxy",)),
    (proxy_paging, ("proxy_paging",)),
    (otel, ("otel",)),
    (demo, ("demo",)),
)
# Results files no section reads: summary.json repeats the others with each run's seconds.
UNREPORTED = frozenset({"summary"})


def render(results: Mapping[str, Results]) -> str:
    """Return docs/benchmarks.md for ``results`` (by file stem)."""
    machine = results["pager"]["machine"]
    lines = [
        "<!-- Generated by bench/report.py from bench/results/*.json: do not edit by hand. "
        "Run `make bench` (or one benchmark), then `python -m bench.report`. -->",
        "",
        "# Benchmarks",
        "",
        "`make bench` runs every `bench/bench_*.py` and writes its JSON to `bench/results/` "
        "(`summary.json` collects them); `python -m bench.report` turns them into this page. "
        "Data: the tau-bench airline copy shipped in `runtime/data/tau_bench_airline`, or "
        "`../shared/data` when present; `LLM386_BENCH_DATA=folder` points every benchmark at "
        "another folder of `sessions.json` and `tools.json` in that format, read as "
        "`llm386 import` reads them. Figures are p50 unless marked, from one machine "
        f"({machine['cpu']}, Python {machine['python']}, 2 cores shared with other jobs), so "
        "they swing by up to 2x between runs. Prose elsewhere in docs/ that quotes a figure "
        "names its results file in a `<!-- figures … -->` comment, checked by "
        "tests/docs/test_figures.py.",
        "",
    ]
    for section, _ in SECTIONS:
        lines += [*section(results), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with --check, compare) docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=DOC)
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    args = parser.parse_args(argv)
    text = render(load(args.results))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python -m bench.report")
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
