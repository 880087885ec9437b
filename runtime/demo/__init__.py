"""The demo data beyond the imported runs: what makes every page of the web app show something.

Owns nothing itself; one module per kind of demo record, each with a loader that takes
``(store, traces)``, adds only what is missing (safe to run again) and returns a one-line summary:

- ``runtime.demo.budget``: sample-agent sessions under a tight token budget, so turns omit
  blocks (with the pager's reasons);
- ``runtime.demo.captured``: calls sent through the real capture proxy to the offline model's
  loopback upstream, one of them failing in the middle of its session;
- ``runtime.demo.derived``: a replay and an experiment of recorded turns, both sent to the
  offline model (nothing is spent).

Invariants: every record is made by the product's own code paths (agent, pager, proxy, replay,
experiment), never written by hand; everything sent goes to the offline model, locally.
"""
