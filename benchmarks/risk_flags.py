"""Risk flags with measured precision (issue 13, item 6), recorded.

On the default world (20,000 deals, seed 1, default settings):
- the backtest's lift of every flag (loss rate when flagged / when not, test snapshots with
  a known outcome), per fold and pooled, and the share of test snapshots (open deals)
  carrying a flag their fold's model raises;
- the final model's flags (trained at the end of the data): each flag's lift on its training
  snapshots (point in time, label weights), which flags it raises (lift >= 1.3), and the
  share of the deals open at the last snapshot time that carry one, by flag. The bar: at
  most a quarter.

    python benchmarks/risk_flags.py [--opportunities 20000] [--seed 1] [--data DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.record import save
from features.loading import load_export
from features.synthetic import generate_world, write_world
from models.risk import FLAG_CODES, MIN_LIFT, change_over, fit_risk_flags, flag_masks
from models.win import WinModel, WinModelConfig
from training.backtest import run_backtest
from training.dataset import PreparedData, prepare

BAR = 0.25


def final_flags(data: PreparedData) -> dict[str, Any]:
    """The flags a model trained at the end of the data raises on the deals open then."""
    training = data.training_at(data.data_end)
    model = WinModel(data.plan, WinModelConfig()).fit(training)
    risk = fit_risk_flags(model, training)
    snaps = data.snapshots
    last = snaps["as_of"].max()
    rows = (snaps["as_of"] >= last - np.timedelta64(7, "D")).to_numpy()
    recent = snaps[rows].reset_index(drop=True)
    p = model.predict(recent).won
    change = change_over(recent["opportunity_id"].to_numpy(), recent["as_of"].to_numpy(), p)
    now = (recent["as_of"] == last).to_numpy()
    open_now = recent[now].reset_index(drop=True)
    flags = risk.flags(open_now, p[now], change_7d=change[now])
    masks = flag_masks(open_now, p[now], change_7d=change[now], thresholds=risk.thresholds)
    flagged = np.array([bool(f) for f in flags])
    return {
        "as_of": last.isoformat(),
        "open_deals": len(open_now),
        "flagged": int(flagged.sum()),
        "share_flagged": float(flagged.mean()),
        "bar": BAR,
        "holds": bool(flagged.mean() <= BAR),
        "every_flag_has_a_reason": all(f.reason for deal in flags for f in deal),
        "raised": list(risk.raised_),
        "open_deals_by_flag": {
            code: {"fires": int(masks[code].sum()), "raised": code in risk.raised_}
            for code in FLAG_CODES
        },
        "training_lift": {code: lift.to_dict() for code, lift in risk.lift_.items()},
        "training_share_flagged": risk.share_flagged_,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opportunities", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, default=None, help="an export instead of a world")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        source = args.data
        if source is None:
            source = Path(tmp) / "world"
            write_world(generate_world(n_opportunities=args.opportunities, seed=args.seed), source)
        data = prepare(load_export(source))
    backtest = run_backtest(data).metrics["risk_flags"]
    final = final_flags(data)
    pooled = backtest["pooled"]
    for code in FLAG_CODES:
        lift = pooled["flags"][code]
        print(
            f"{code:24s} backtest lift {lift['lift']:.2f} (flags {lift['share_flagged']:.0%}); "
            f"training lift {final['training_lift'][code]['lift']:.2f}; "
            f"{'raised' if code in final['raised'] else 'not raised'}"
        )
    print(
        f"open deals flagged: {final['flagged']} of {final['open_deals']} "
        f"({final['share_flagged']:.1%}); backtest test snapshots flagged "
        f"{pooled['share_flagged']:.1%}"
    )
    save(
        "risk_flags",
        {
            "opportunities": None if args.data else args.opportunities,
            "seed": None if args.data else args.seed,
            "data": str(args.data) if args.data else "generated",
            "min_lift": MIN_LIFT,
            "seconds": round(time.perf_counter() - started, 1),
            "final": final,
            "backtest": backtest,
        },
    )


if __name__ == "__main__":
    main()
