"""Post-screening of assessors: the BS.1534-3 rule and the EnCodec paper's rule, each saying who and why, both
with the server's own check of listening time.

Ratings alone cannot tell a listener from a script that finds the hidden reference and the low anchor in the
downloaded samples. Time can: with sounds that play in step, a trial takes at least one pass through the excerpt, so
every policy also leaves out whoever submitted a trial sooner than one stimulus length after the server sent its
first sound, or with a sound the server never sent (``server_trial_ms``, ``stimulus_ms``, ``audio_requests`` and
``reference_audio_requests`` in the export, none of them reported by the browser).
Raw data is never deleted: a policy only names the participants a report leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional


@dataclass(frozen=True)
class Rule:
    """Exclude when the share of trials where ``condition`` is rated ``below`` / ``above`` a score passes a limit."""

    condition: str  # "hidden_reference" or an anchor name
    direction: str  # "below" or "above"
    score: float
    share: float
    inclusive: bool  # share >= limit (True) or share > limit (False)

    def describe(self) -> str:
        cmp = ">=" if self.inclusive else ">"
        return f"{self.condition} rated {self.direction} {self.score:g} in {cmp} {self.share:.0%} of trials"


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    rules: tuple[Rule, ...]


POLICIES = {
    "bs1534_3": Policy("bs1534_3", "ITU-R BS.1534-3: hidden reference below 90 for more than 15 % of the items, "
                       "or the mid-range (7 kHz) anchor above 90 for more than 15 % of the items",
                       (Rule("hidden_reference", "below", 90, 0.15, False), Rule("lp7000", "above", 90, 0.15, False))),
    "encodec_2022": Policy("encodec_2022", "Defossez et al. 2022: reference below 90 in at least 20 % of trials, "
                           "or the low anchor (3.5 kHz) above 80 in more than 50 % of trials",
                           (Rule("hidden_reference", "below", 90, 0.20, True),
                            Rule("lp3500", "above", 80, 0.50, False))),
}


@dataclass
class ScreeningResult:
    policy: str
    description: str
    n_before: int
    excluded: dict[str, list[str]] = field(default_factory=dict)  # participant -> reasons
    not_applicable: list[str] = field(default_factory=list)

    @property
    def n_after(self) -> int:
        return self.n_before - len(self.excluded)

    def as_dict(self) -> dict:
        return {"policy": self.policy, "description": self.description, "n_before": self.n_before,
                "n_after": self.n_after, "excluded": self.excluded, "not_applicable": self.not_applicable}


LISTENING_RULE = ("trials submitted sooner than one stimulus length after their first sound was sent, or with a "
                  "sound never sent (server clock; any such trial excludes)")


def _rushed(row: dict) -> bool:
    """Whether the trial of this row was submitted without the server having seen time to listen to it."""
    return (row["server_trial_ms"] is None or row["server_trial_ms"] < row["stimulus_ms"]
            or not row["audio_requests"] or not row["reference_audio_requests"])


def _screen_listening(rows: list[dict], result: "ScreeningResult") -> None:
    """Add the listening-time rule's exclusions; rows without server timing (older versions) make it not apply."""
    if not any(r.get("server_trial_ms") is not None for r in rows):
        result.not_applicable.append(f"{LISTENING_RULE}: these ratings carry no server timing")
        return
    trials: dict[str, dict[int, bool]] = {}
    for row in rows:
        seen = trials.setdefault(row["participant_id"], {})
        seen[row["trial_position"]] = seen.get(row["trial_position"], False) or _rushed(row)
    for pid, rushed in sorted(trials.items()):
        n = sum(rushed.values())
        if n:
            result.excluded.setdefault(pid, []).append(
                f"{n} of {len(rushed)} trials submitted sooner than one stimulus length after their first sound was "
                "sent, or with a sound never sent (server clock)")


def _condition_key(row: dict) -> str:
    return "hidden_reference" if row["condition_kind"] == "hidden_reference" else row["condition"]


def screen(rows: Iterable[dict], policy: "str | Policy") -> ScreeningResult:
    """Apply a policy and the listening-time rule to the graded (non-training, rated) rows among ``rows``, export
    rows with at least participant_id, trial_position, condition, condition_kind, score and is_training; the
    listening rule reads server_trial_ms, stimulus_ms, audio_requests and reference_audio_requests where present."""
    pol = POLICIES[policy] if isinstance(policy, str) else policy
    by_participant: dict[str, dict[str, list[float]]] = {}
    graded = [row for row in rows if not row["is_training"] and row["score"] is not None]
    for row in graded:
        by_participant.setdefault(row["participant_id"], {}).setdefault(_condition_key(row), []).append(
            float(row["score"]))
    result = ScreeningResult(pol.name, pol.description, len(by_participant))
    present = {c for scores in by_participant.values() for c in scores}
    for rule in pol.rules:
        if rule.condition not in present:
            result.not_applicable.append(f"{rule.describe()}: the test has no {rule.condition}")
    for pid, scores in sorted(by_participant.items()):
        for rule in pol.rules:
            values = scores.get(rule.condition)
            if not values:
                continue
            hits = sum((s < rule.score) if rule.direction == "below" else (s > rule.score) for s in values)
            share = hits / len(values)
            failed = share >= rule.share if rule.inclusive else share > rule.share
            if failed:
                result.excluded.setdefault(pid, []).append(
                    f"{rule.condition} rated {rule.direction} {rule.score:g} in {hits} of {len(values)} trials "
                    f"({share:.0%}; limit {'>=' if rule.inclusive else '>'} {rule.share:.0%})")
    _screen_listening(graded, result)
    return result


def kept(rows: Iterable[dict], result: Optional[ScreeningResult]) -> list[dict]:
    """The rows of participants a screening result keeps (all rows when there is no result)."""
    if result is None:
        return list(rows)
    return [r for r in rows if r["participant_id"] not in result.excluded]
