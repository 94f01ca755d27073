"""The ``referralgraph`` command line: batch jobs over parquet, CSV and Arrow
IPC files (a file or a folder of parts), parquet out.

Exit codes: 0 done; 2 bad usage (an unknown option, a bad value); 3 bad
input (a missing file or column, invalid rows in strict mode, a bad
policy); 4 an internal error (a bug: please report it); 130 interrupted
(Ctrl-C; no partial output file is left behind).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import typer

if TYPE_CHECKING:
    from .io import Format

__all__ = ["app", "main"]

log = logging.getLogger("referralgraph.cli")

EXIT_USAGE, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 2, 3, 4, 130

app = typer.Typer(
    name="referralgraph",
    help=(
        "Score referral programs: multi-level attribution, reach, scores, seeds and an "
        "HTML report, on parquet / CSV / Arrow IPC files or folders of parts.\n\n"
        "Examples:\n\n"
        "  referralgraph demo\n\n"
        "  referralgraph attribute -r referrals.parquet -e events/ --policy policy.toml "
        "-o ledger.parquet\n\n"
        "  referralgraph seeds --edges follows.csv --src followee --dst follower "
        "-k 50 -o seeds.parquet"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _State:
    quiet = False
    fmt: Format | None = None


state = _State()

# --------------------------------------------------------------- options

ReferralsOpt = Annotated[
    Path,
    typer.Option(
        "--referrals", "-r", help="Referrals: user_id, referrer_id[, joined_at, channel]."
    ),
]
EventsOpt = Annotated[
    Path, typer.Option("--events", "-e", help="Events: user_id, amount[, ts, event_id].")
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output parquet file.")]
OnInvalidOpt = Annotated[
    str,
    typer.Option(
        "--on-invalid",
        help='"raise" stops at the first bad row; "drop" leaves bad rows out and writes them '
        "to <out>.issues.parquet.",
    ),
]


@app.callback()
def _global(
    threads: Annotated[
        int | None, typer.Option("--threads", "-j", help="Worker threads (default: all cores).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    log_json: Annotated[
        bool, typer.Option("--log-json", help="Log each step as a JSON line on stderr.")
    ] = False,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="Input format: parquet, csv or ipc (default: by extension)."),
    ] = None,
) -> None:
    if threads is not None:
        if threads < 1:
            raise typer.BadParameter("must be >= 1", param_hint="--threads")
        # Read by the engine's thread pool when it starts (first parallel call).
        os.environ["RAYON_NUM_THREADS"] = str(threads)
    if fmt is not None and fmt not in ("parquet", "csv", "ipc"):
        raise typer.BadParameter("must be parquet, csv or ipc", param_hint="--format")
    state.quiet = quiet or not sys.stderr.isatty()
    state.fmt = cast("Format | None", fmt)
    if log_json:
        _log_json()


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        return json.dumps(out, default=str)


def _log_json() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger("referralgraph")
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logging.NullHandler)]
    root.addHandler(handler)
    root.setLevel(logging.INFO)


# --------------------------------------------------------------- progress


@contextlib.contextmanager
def step(description: str, **fields: Any) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on a terminal for one step (quiet in pipes and with
    --quiet); yields the ``progress(done, total)`` callback for the engine.
    Logs the step and its time."""
    t = time.perf_counter()
    if state.quiet:
        yield None
    else:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=None)

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total or None)

            yield update
    log.info(
        description, extra={"fields": {"seconds": round(time.perf_counter() - t, 3), **fields}}
    )


def _echo(msg: str) -> None:
    typer.echo(msg)


# --------------------------------------------------------------- inputs


def _mode(on_invalid: str) -> Literal["raise", "drop"]:
    """The --on-invalid value as the API's mode (the API checks it)."""
    return cast('Literal["raise", "drop"]', on_invalid)


def _graph(path: Path, on_invalid: str = "raise") -> Any:
    from . import ReferralGraph, io

    with step(f"building the graph from {path}") as progress:
        return ReferralGraph.from_arrow(
            io.reader(path, state.fmt),
            on_invalid=_mode(on_invalid),
            progress=progress,
        )


def _events(path: Path) -> Any:
    from . import io

    with step(f"reading {path}"):
        return io.read_table(path, state.fmt)


def _policy(
    policy: Path | None,
    rates: str | None,
    window: str | None,
    max_events_per_buyer: int | None,
    qualify: str | None,
    compression: bool,
    cap: float | None,
) -> Any:
    from .policy import Policy

    if policy is not None:
        p = Policy.from_toml(policy)
        if any(x is not None for x in (rates, window, max_events_per_buyer, qualify, cap)):
            raise typer.BadParameter("give either --policy or policy flags, not both")
        return p
    d: dict[str, Any] = {"rates": [float(x) for x in (rates or "0.10,0.05,0.02").split(",")]}
    for k, v in (
        ("window", window),
        ("max_events_per_buyer", max_events_per_buyer),
        ("qualify", qualify),
        ("cap_per_beneficiary", int(cap) if cap is not None and cap == int(cap) else cap),
    ):
        if v is not None:
            d[k] = v
    d["compression"] = compression
    return Policy.from_dict(d)


def _write(table: Any, out: Path, what: str) -> None:
    from . import io

    io.write_parquet(table, out)
    _echo(f"{what}: {table.num_rows:,} rows -> {out}")


def _write_issues(issues: Any, out: Path) -> None:
    from . import io

    if issues is not None and issues.num_rows:
        # Always parquet, whatever the output is (report.html -> report.issues.parquet).
        path = io.sibling(out.with_suffix(".parquet"), "issues")
        io.write_parquet(issues, path)
        _echo(f"issues: {issues.num_rows:,} rows left out -> {path}")


# --------------------------------------------------------------- commands


@app.command()
def attribute(
    referrals: ReferralsOpt,
    events: EventsOpt,
    out: OutOpt,
    policy: Annotated[Path | None, typer.Option(help="Policy TOML file.")] = None,
    rates: Annotated[
        str | None, typer.Option(help="Per-level rates, comma separated (default 0.10,0.05,0.02).")
    ] = None,
    window: Annotated[str | None, typer.Option(help='e.g. "365d".')] = None,
    max_events_per_buyer: Annotated[int | None, typer.Option()] = None,
    qualify: Annotated[
        str | None, typer.Option(help='"purchased" or "min_spend:<amount>".')
    ] = None,
    compression: Annotated[bool, typer.Option(help="Skip unqualified ancestors.")] = False,
    cap: Annotated[float | None, typer.Option(help="Cap per beneficiary (amount unit).")] = None,
    totals: Annotated[
        Path | None, typer.Option(help="Totals file (default: <out>.totals.parquet).")
    ] = None,
    on_invalid: OnInvalidOpt = "raise",
) -> None:
    """Pay every purchase's credit up the referral chain: writes the ledger
    and the per-beneficiary totals.

    Example: referralgraph attribute -r referrals.parquet -e events/ --rates 0.1,0.05
    --qualify purchased --cap 50000 -o ledger.parquet
    """
    from . import io

    pol = _policy(policy, rates, window, max_events_per_buyer, qualify, compression, cap)
    g = _graph(referrals, on_invalid)
    ev = io.reader(events, state.fmt)
    with step("attributing", policy=repr(pol)) as progress:
        result = g.attribute(ev, pol, on_invalid=_mode(on_invalid), progress=progress)
    _write(result.ledger, out, "ledger")
    _write(result.totals, totals or io.sibling(out, "totals"), "totals")
    _write_issues(_concat_issues(g.issues, result.issues), out)
    s = result.stats
    _echo(
        f"events {s['events']:,}, creditable {s['creditable_events']:,}, unknown buyers "
        f"{s['unknown_buyer_events']:,}; credited {s['credited']}, forfeited {s['forfeited']}, "
        f"capped off {s['capped_off']}"
    )
    log.info("attribution stats", extra={"fields": s})


def _concat_issues(referrals: Any, events: Any | None = None) -> Any:
    """Rows left out of the referrals and of the events, in one table with
    a ``table`` column saying which."""
    import pyarrow as pa

    tagged = [(referrals, "referrals")] + ([(events, "events")] if events is not None else [])
    return pa.concat_tables(
        [t.append_column("table", pa.array([name] * t.num_rows, pa.string())) for t, name in tagged]
    )


@app.command()
def reach(
    out: OutOpt,
    referrals: Annotated[
        Path | None, typer.Option("--referrals", "-r", help="Reach on the referral forest.")
    ] = None,
    edges: Annotated[Path | None, typer.Option(help="Reach on a social graph instead.")] = None,
    max_depth: Annotated[int, typer.Option(help="Levels counted on the forest.")] = 3,
    k: Annotated[int, typer.Option("-k", help="Hops on a social graph.")] = 2,
    method: Annotated[str, typer.Option(help="exact, hll or auto (social graphs).")] = "exact",
    precision: Annotated[int, typer.Option(help="HyperLogLog precision.")] = 10,
    src: Annotated[str, typer.Option(help="Edge source column.")] = "src",
    dst: Annotated[str, typer.Option(help="Edge target column.")] = "dst",
    on_invalid: OnInvalidOpt = "raise",
) -> None:
    """Per-user reach: on the referral forest (level_1..level_K, descendants,
    height) or, with --edges, distinct users within 1..k hops of a social graph.

    Example: referralgraph reach -r referrals.parquet --max-depth 5 -o reach.parquet
    """
    if (referrals is None) == (edges is None):
        raise typer.BadParameter("give exactly one of --referrals or --edges")
    if referrals is not None:
        g = _graph(referrals, on_invalid)
        with step("reach"):
            table = g.reach(max_depth=max_depth)
        _write_issues(_concat_issues(g.issues), out)
    else:
        assert edges is not None
        sg = _social(edges, src, dst, 0.0)
        with step(f"reach within {k} hops ({method})") as progress:
            table = sg.reach(k=k, method=method, precision=precision, progress=progress)
    _write(table, out, "reach")


@app.command()
def scores(
    referrals: ReferralsOpt,
    events: EventsOpt,
    out: OutOpt,
    max_depth: Annotated[int, typer.Option(help="Levels of downstream amount.")] = 3,
    on_invalid: OnInvalidOpt = "raise",
) -> None:
    """Per-user scores and tiers (core, advocate, active, dormant).
    --on-invalid applies to the referrals (scores take no bad events).

    Example: referralgraph scores -r referrals.parquet -e events.parquet -o scores.parquet
    """
    g = _graph(referrals, on_invalid)
    ev = _events(events)
    with step("scores"):
        table = g.scores(ev, max_depth=max_depth)
    _write(table, out, "scores")
    _write_issues(_concat_issues(g.issues), out)


def _social(edges: Path, src: str, dst: str, p: float | str) -> Any:
    from . import SocialGraph, io

    with step(f"building the social graph from {edges}") as progress:
        return SocialGraph.from_arrow(
            io.reader(edges, state.fmt),
            src=src,
            dst=dst,
            p=p,
            progress=progress,
        )


def _p(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


@app.command()
def seeds(
    out: OutOpt,
    edges: Annotated[
        Path | None, typer.Option(help="Social graph edges (influence flows src -> dst).")
    ] = None,
    referrals: Annotated[
        Path | None,
        typer.Option(
            "--referrals", "-r", help="Seed the referral forest instead (referrer -> referee)."
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", help="Seeds to pick.")] = 50,
    p: Annotated[
        str, typer.Option("-p", help='A probability, "weighted_cascade", or a column name.')
    ] = "weighted_cascade",
    model: Annotated[str, typer.Option(help="ic or lt.")] = "ic",
    epsilon: Annotated[float, typer.Option(help="IMM's approximation slack.")] = 0.1,
    max_hops: Annotated[int | None, typer.Option(help="Cut cascades at this many hops.")] = None,
    candidates: Annotated[
        Path | None, typer.Option(help="A file whose user_id column lists the allowed seeds.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    src: Annotated[str, typer.Option(help="Edge source column.")] = "src",
    dst: Annotated[str, typer.Option(help="Edge target column.")] = "dst",
) -> None:
    """The k users whose word of mouth reaches the most people (IMM).

    Example: referralgraph seeds --edges follows.csv --src followee --dst follower -k 50
    --max-hops 2 -o seeds.parquet
    """
    from . import io, seeds_stats

    if (referrals is None) == (edges is None):
        raise typer.BadParameter("give exactly one of --edges or --referrals")
    if referrals is not None:
        sg = _graph(referrals).as_social(_p(p))
    else:
        assert edges is not None
        sg = _social(edges, src, dst, _p(p))
    cands = None
    if candidates is not None:
        cands = io.read_table(candidates, state.fmt).column("user_id")
    with step(f"IMM, k = {k}") as progress:
        table = sg.seeds(
            k,
            model=model,
            epsilon=epsilon,
            seed=seed,
            candidates=cands,
            max_hops=max_hops,
            progress=progress,
        )
    _write(table, out, "seeds")
    st = seeds_stats(table)
    _echo(
        f"estimated spread of {table.num_rows} seeds: {table.column('spread')[-1].as_py():,.1f} "
        f"({st['rr_sets']:,} RR sets, {st['rr_bytes'] / 2**20:.1f} MiB)"
        if table.num_rows
        else "no seeds"
    )


@app.command()
def report(
    referrals: ReferralsOpt,
    events: EventsOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output HTML file.")],
    policy: Annotated[
        Path | None, typer.Option(help="Policy TOML (adds credit and top beneficiaries).")
    ] = None,
    spend: Annotated[Path | None, typer.Option(help="channel, spend table (adds ROI).")] = None,
    max_depth: Annotated[int, typer.Option(help="Levels of reach.")] = 3,
    on_invalid: OnInvalidOpt = "raise",
) -> None:
    """One self-contained HTML page: pyramid, reach distribution, channel ROI,
    credit by level, top beneficiaries, program metrics.

    Example: referralgraph report -r referrals.parquet -e events.parquet --policy policy.toml
    -o report.html
    """
    from . import io
    from . import report as rep
    from .policy import Policy

    g = _graph(referrals, on_invalid)
    ev = _events(events)
    result = None
    if policy is not None:
        pol = Policy.from_toml(policy)
        with step("attributing") as progress:
            result = g.attribute(ev, pol, on_invalid=_mode(on_invalid), progress=progress)
    sp = io.read_table(spend, state.fmt) if spend is not None else None
    with step("report"):
        rep.write(out, g, ev, result=result, spend=sp, max_depth=max_depth)
    _echo(f"report -> {out}")
    _write_issues(_concat_issues(g.issues, None if result is None else result.issues), out)


@app.command()
def demo(
    users: Annotated[int, typer.Option(help="Users in the synthetic program.")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Random seed of the program.")] = 0,
    report_path: Annotated[
        Path, typer.Option("--report", help="Where to write the HTML report.")
    ] = Path("referralgraph-demo.html"),
) -> None:
    """A synthetic program end to end: attribution, reach, scores, seeds, a
    printed summary and an HTML report."""
    from ._demo import run

    run(users=users, seed=seed, report_path=report_path, step=step, echo=_echo)


# --------------------------------------------------------------- entry point


def _error(msg: str) -> None:
    typer.echo(f"referralgraph: error: {msg}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code (see the module doc)."""
    from typer.main import get_command

    from .exceptions import ReferralGraphError

    cmd = get_command(app)
    try:
        rv = cmd.main(args=argv, prog_name="referralgraph", standalone_mode=False)
        # Commands return None; typer returns an exit code for typer.Exit, and
        # turns Ctrl-C into 130 (click-based versions raise Abort instead).
        code = int(rv) if isinstance(rv, int) else 0
        if code == EXIT_INTERRUPTED:
            _error("interrupted")
        return code
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        _error("aborted")
        return EXIT_INTERRUPTED
    except typer.TyperException as e:  # usage errors
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            _error(str(e))
        return int(getattr(e, "exit_code", EXIT_USAGE))
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except ReferralGraphError as e:
        if type(e) is ReferralGraphError:  # a panic in the engine: a bug
            _error(str(e))
            return EXIT_INTERNAL
        _error(f"{type(e).__name__}: {e}")
        return EXIT_INPUT
    except MemoryError as e:  # work refused because it would not fit (HLL, RR sets, ledger)
        _error(f"MemoryError: {e}")
        return EXIT_INPUT
    except (OSError, TypeError, ValueError) as e:
        # Missing files, unreadable formats, bad arguments to the API.
        _error(f"{type(e).__name__}: {e}".splitlines()[0])
        return EXIT_INPUT
    except Exception as e:  # anything else is a bug
        _error(f"internal error (a bug, please report it): {type(e).__name__}: {e}")
        return EXIT_INTERNAL
