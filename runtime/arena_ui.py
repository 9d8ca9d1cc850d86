"""The arena in the web UI: votes recorded to the store, the Leaderboard tab, battle weights, page texts.

FastChat's vote handlers hand each vote here (fastchat_compat shim 6): it becomes a `Vote` naming the
exact model versions from the worker's live model set, spooled and stored off the UI's path. The
Leaderboard tab reads only the per-pair counters (cached a few seconds) and is rebuilt on page load.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from arena.board import battle_matrices, board
from arena.ratings import DEFAULT_MIN_VOTES
from arena.votes import ERROR_MARK, PAIR_TYPES, SINGLE_TYPES, ModelRef, Vote, voter_key
from runtime import fastchat_compat
from stores.votes import SpoolDirectory, StoreUnavailable, VoteRecorder, VotesStore, read_totals

log = structlog.get_logger("arena")

DEFAULT_TITLE = "Model arena"
DEFAULT_INTRO = (
    "Chat with the models served here, or let two anonymous models answer the same prompt and vote for "
    "the better answer: their names are shown after your vote. Votes rank the models in the "
    "**Leaderboard** tab."
)
DEFAULT_TERMS = (
    "Prompts are sent to the models this service's operator deploys. A vote records which models "
    "answered, which version of each, and how you voted; not what you wrote (unless the operator keeps "
    "conversations) and not your IP address."
)
MAX_TEXT_BYTES = 64 * 1024
FAILURES_TO_PAUSE = 3  # consecutive failed answers before a model leaves new battles
PAUSE_SECONDS = 60.0  # then it is tried again (one more failure pauses it again)


def _page_text(value: str | None, path: str | None, default: str) -> str:
    """A page text (markdown) from its file when one is named and readable, else its value; bounded."""
    if path:
        try:
            return Path(path).read_text(encoding="utf-8")[:MAX_TEXT_BYTES]
        except OSError as exc:
            log.warning("page_text_unreadable", path=path, error=str(exc))
    return (default if value is None else value)[:MAX_TEXT_BYTES]


TextSource = tuple[str | None, str | None]  # (the text, a file holding it)


@dataclass(frozen=True)
class PageTexts:
    title: str = DEFAULT_TITLE
    intro: str = DEFAULT_INTRO
    terms: str = DEFAULT_TERMS

    @classmethod
    def read(cls, title: TextSource, intro: TextSource, terms: TextSource) -> PageTexts:
        """The texts from the web settings (ARENA_TITLE, ARENA_TITLE_FILE, ...); defaults name nobody."""
        return cls(
            _page_text(*title, DEFAULT_TITLE).strip() or DEFAULT_TITLE,
            _page_text(*intro, DEFAULT_INTRO),
            _page_text(*terms, DEFAULT_TERMS),
        )


class ModelHealth:
    """Which models answer with errors: a model whose last FAILURES_TO_PAUSE answers failed sits out new
    battles for PAUSE_SECONDS, then is tried again."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[str, int] = {}
        self._paused_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def answered(self, model: str, ok: bool) -> None:
        with self._lock:
            if ok:
                self._failures.pop(model, None)
                self._paused_until.pop(model, None)
                return
            self._failures[model] = self._failures.get(model, 0) + 1
            if self._failures[model] >= FAILURES_TO_PAUSE:
                self._paused_until[model] = self.clock() + PAUSE_SECONDS
                log.warning("model_paused_in_battles", model=model, seconds=PAUSE_SECONDS)

    def failing(self, model: str) -> bool:
        with self._lock:
            return self.clock() < self._paused_until.get(model, 0.0)


def state_failed(state: Any) -> bool:
    """Whether a FastChat state's last answer ended in an error (FastChat appends its error code)."""
    messages = getattr(getattr(state, "conv", None), "messages", None) or []
    last = messages[-1] if messages else None
    text = last[1] if isinstance(last, list | tuple) and len(last) > 1 else None
    return isinstance(text, str) and ERROR_MARK in text


def battle_weight(
    models: Callable[[], Mapping[str, Mapping[str, Any]]], health: ModelHealth
) -> Callable[[str], float]:
    """A model's weight in new battles: its registry `arena_weight` (default 1; 0 never), 0 while failing
    or when it is not in the live set."""

    def weight(name: str) -> float:
        entry = models().get(name)
        if entry is None or health.failing(name):
            return 0.0
        value = entry.get("arena_weight", 1.0)
        return float(value) if isinstance(value, int | float) else 1.0

    return weight


@dataclass
class VoteSettings:
    salt: str
    keep_text: bool = False


def _answering_hash(entry: Mapping[str, Any], answered: str) -> str:
    """The spec hash a vote names: the answering variant's config hash (a rollout's weight steps leave
    it alone), the model's own hash without variants, "" when a model with variants did not say which
    one answered."""
    variants = entry.get("variants")
    if not isinstance(variants, list) or len(variants) <= 1:
        if answered and answered != entry.get("endpoint_name"):
            return ""  # the live set changed since the answer (a promotion): its config is not this one
        return str(entry.get("hash") or "")
    for variant in variants:
        if isinstance(variant, Mapping) and answered and variant.get("endpoint_name") == answered:
            return str(variant.get("hash") or "")
    return ""


def build_vote(  # noqa: PLR0917 (FastChat's handler arguments, then the UI's context)
    tab: str,
    vote_type: str,
    states: list[Any],
    selectors: list[Any],
    session: str,
    live: Mapping[str, Mapping[str, Any]],
    version: int | None,
    settings: VoteSettings,
) -> Vote | None:
    """A Vote from FastChat's handler arguments (None for what is not a vote, e.g. the share button)."""
    wanted = PAIR_TYPES if tab != "direct" else SINGLE_TYPES
    if vote_type not in wanted or not states or any(s is None for s in states):
        return None
    refs = []
    for state in states:
        name = str(getattr(state, "model_name", "") or "")
        entry = live.get(name, {})
        endpoint = str(entry.get("endpoint_name") or "")
        variants = entry.get("variants")
        single = not isinstance(variants, list) or len(variants) <= 1
        # the worker says which variant answered; a model with one endpoint has no choice
        answered = fastchat_compat.answered_by(state) or (endpoint if single else "")
        refs.append(
            ModelRef(
                name,
                version if entry else None,
                endpoint,
                _answering_hash(entry, answered),
                str(entry.get("conv_template") or ""),
                answered,
            )
        )
    conv = states[0].conv
    # FastChat's rule: a battle vote counts only while both names are hidden (its selectors stay "" until
    # the vote reveals them).
    revealed = tab == "battle" and any(str(s or "").strip() for s in selectors)
    conversation = None
    if settings.keep_text:
        conversation = [[list(m) for m in s.conv.messages[s.conv.offset :]] for s in states]
    return Vote(
        vote_id=uuid.uuid4().hex,
        type=vote_type,
        tab=tab,
        models=tuple(refs),
        tstamp=time.time(),
        turns=max(1, (len(conv.messages) - conv.offset) // 2),
        revealed=revealed,
        error=any(state_failed(s) for s in states),
        voter=voter_key(session, settings.salt) if session else "",
        conversation=conversation,
    )


# --- The Leaderboard tab ------------------------------------------------------------------------------
class LeaderboardView:
    """The leaderboard document and its plots, from the counters, cached for `ttl` seconds per view."""

    def __init__(self, store: VotesStore, min_votes: int = DEFAULT_MIN_VOTES, ttl: float = 5.0) -> None:
        self.store = store
        self.min_votes = min_votes
        self.ttl = ttl
        self._cache: dict[str, tuple[float, dict[str, Any], dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def document(self, by: str = "name", days: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The leaderboard by name or version, over all time or the last `days` UTC days (today included).
        Raises StoreUnavailable when the counters cannot be read."""
        key = f"{by}|{days}"
        with self._lock:
            hit = self._cache.get(key)
            if hit and time.monotonic() - hit[0] < self.ttl:
                return hit[1], hit[2]
        since = None if days is None else datetime.now(UTC).date() - timedelta(days=days - 1)
        battle = read_totals(self.store, "battle", by, since)
        doc = board(
            battle,
            read_totals(self.store, "side_by_side", by, since),
            read_totals(self.store, "direct", by, since),
            by=by,
            min_votes=self.min_votes,
        )
        keys = [r["model"] + (f"@{r['version']}" if by == "version" else "") for r in doc["models"]]
        plots = battle_matrices(battle, keys)
        with self._lock:
            self._cache[key] = (time.monotonic(), doc, plots)
        return doc, plots


WINDOWS = {"all time": None, "last 30 days": 30, "last 7 days": 7}


def leaderboard_tables(doc: Mapping[str, Any]) -> tuple[list[list[Any]], list[list[Any]], list[list[Any]]]:
    ranking = [
        [
            r["rank"],
            r["model"] + (f" @{r['version'][:12]}" if "version" in r else ""),
            r["rating"],
            f"{r['ci_lower']:.0f} to {r['ci_upper']:.0f}",
            r["votes"],
            "provisional" if r["provisional"] else "",
        ]
        for r in doc["models"]
    ]
    side = [[s["model_a"], s["model_b"], *(s[t] for t in PAIR_TYPES)] for s in doc["side_by_side"]]
    direct = [[d["model"], *(d[t] for t in SINGLE_TYPES)] for d in doc["direct"]]
    return ranking, side, direct


def heatmap(values: list[list[Any]], names: list[str], title: str, percent: bool) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure(
        go.Heatmap(
            z=values,
            x=names,
            y=names,
            colorscale="RdBu" if percent else "Blues",
            texttemplate="%{z:.0%}" if percent else "%{z}",
            hovertemplate="%{y} vs %{x}: %{z}<extra></extra>",
        )
    )
    figure.update_layout(title=title, xaxis_title="model B", yaxis_title="model A", height=420)
    figure.update_yaxes(autorange="reversed")
    return figure


class ArenaPage:
    """Builds the Leaderboard and About tabs and fills them (and the model descriptions) on page load."""

    def __init__(
        self, view: LeaderboardView, texts: PageTexts, live: Callable[[], Mapping[str, Mapping[str, Any]]]
    ) -> None:
        self.view = view
        self.texts = texts
        self.live = live
        self.outputs: list[Any] = []
        self.inputs: list[Any] = []

    def build_about(self) -> None:
        import gradio as gr

        gr.Markdown(self.texts.terms, elem_id="arena_terms")

    def build_leaderboard_tab(self, *_: Any) -> None:
        import gradio as gr

        summary = gr.Markdown(elem_id="leaderboard_summary")
        with gr.Row():
            by = gr.Radio(
                ["name", "version"], value="name", label="One row per model name, or per version (spec hash)"
            )
            window = gr.Radio(list(WINDOWS), value="all time", label="Votes cast")
        self.inputs = [by, window]
        ranking = gr.Dataframe(
            headers=["rank", "model", "rating", "95% CI", "votes", ""],
            elem_id="leaderboard_table",
            interactive=False,
        )
        with gr.Row():
            win_rate = gr.Plot(label="Win rate (A over B, ties half)")
            battles = gr.Plot(label="Battle count")
        gr.Markdown("### Side-by-side votes (named models; not rated)")
        side = gr.Dataframe(headers=["model A", "model B", *PAIR_TYPES], interactive=False)
        gr.Markdown("### Direct chat feedback")
        direct = gr.Dataframe(headers=["model", *SINGLE_TYPES], interactive=False)
        self.outputs = [summary, ranking, win_rate, battles, side, direct]
        for control in self.inputs:
            control.change(self.refresh, self.inputs, self.outputs)

    def refresh(self, by: str = "name", window: str = "all time") -> list[Any]:
        try:
            doc, plots = self.view.document(by if by in ("name", "version") else "name", WINDOWS.get(window))
        except StoreUnavailable as exc:
            log.warning("leaderboard_unavailable", error=str(exc))
            empty = board({}, {}, {})
            doc, plots = {**empty, "unavailable": True}, battle_matrices({}, [])
        ranking, side, direct = leaderboard_tables(doc)
        summary = (
            "**The votes store cannot be reached right now**; votes are kept and stored when it is back. "
            if doc.get("unavailable")
            else ""
        ) + (
            f"**{doc['battle_votes']}** anonymous battle votes. Bradley-Terry ratings with 95% bootstrap "
            f"intervals; rank = 1 + the number of models surely better. Below {doc['min_votes']} votes a "
            "model is provisional."
        )
        names = plots["models"]
        return [
            summary,
            ranking,
            heatmap(plots["win_rate"], names, "Win rate", percent=True),
            heatmap(plots["battles"], names, "Battles", percent=False),
            side,
            direct,
        ]

    def descriptions(self) -> str:
        models = self.live()
        lines = [f"| {name} | {m.get('description') or ''} |" for name, m in sorted(models.items())]
        return (
            "| model | description |\n| --- | --- |\n" + "\n".join(lines) if lines else "No models are live."
        )

    def attach(self, demo: Any, description_blocks: list[Any]) -> None:
        """On every page load: the leaderboard, and the model descriptions from the live set."""
        with demo:
            if self.outputs:
                demo.load(self.refresh, self.inputs, self.outputs)
            if description_blocks:
                demo.load(lambda: [self.descriptions()] * len(description_blocks), None, description_blocks)


def start_recorder(store: VotesStore, spool: Path, shared_dir: Path | None = None) -> VoteRecorder:
    """The votes recorder: spooling to `spool`, or to a file of its own in `shared_dir` when given."""
    shared = SpoolDirectory(shared_dir) if shared_dir is not None else None
    return VoteRecorder(store, spool, shared=shared).start()
