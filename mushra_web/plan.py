"""A participant's plan: which items, in which order, and which condition sits behind which button.

Drawn once on the server when the participant joins and stored there; the browser only ever sees button numbers.
"""

from __future__ import annotations

import random

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mushra_web.db import Experiment, ItemUse, Participant, Rating, Stimulus, Trial, utcnow
from mushra_web.schema import TestConfig


def allocate_items(session: Session, exp: Experiment, cfg: TestConfig, rng: random.Random) -> list[str]:
    """The test items with the fewest raters, ties broken by the fewest allocations and then at random, counted
    inside the caller's transaction.

    A participant counts as an item's rater only once they have rated it (``count_rater``), so joins that never
    rate cannot push items out of the rotation; allocations only spread people who join at the same time. The
    item_use rows are locked (``FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) so that concurrent
    joins cannot both see the same counts.
    """
    uses = session.execute(select(ItemUse).where(ItemUse.experiment_id == exp.id)
                           .order_by(ItemUse.item_id).with_for_update()).scalars().all()
    per = cfg.design.items_per_participant or len(uses)
    ranked = sorted(uses, key=lambda u: (u.uses, u.allocated, rng.random()))
    chosen = [u.item_id for u in ranked[:per]]
    session.execute(update(ItemUse).where(ItemUse.experiment_id == exp.id, ItemUse.item_id.in_(chosen))
                    .values(allocated=ItemUse.allocated + 1))
    return chosen


def count_rater(session: Session, experiment_id: int, trial: Trial, delta: int) -> None:
    """Add ``delta`` (+1 or -1) to the raters of a test trial's item: +1 when the trial's first rating is stored,
    -1 when its last is taken back or its participant deleted. Training trials are not balanced."""
    if trial.is_training:
        return
    session.execute(update(ItemUse).where(ItemUse.experiment_id == experiment_id, ItemUse.item_id == trial.item_id)
                    .values(uses=ItemUse.uses + delta))


def build_plan(session: Session, exp: Experiment, cfg: TestConfig, participant: Participant) -> int:
    """Create the participant's trials and empty rating rows; returns the number of trials."""
    rng = random.Random(participant.seed)
    test_items = allocate_items(session, exp, cfg, rng)
    rng.shuffle(test_items)
    training = list(cfg.design.training_items)
    stimuli = session.execute(select(Stimulus).where(Stimulus.experiment_id == exp.id)).scalars().all()
    by_item: dict[str, dict[str, Stimulus]] = {}
    for s in stimuli:
        by_item.setdefault(s.item_id, {})[s.condition] = s
    order = [(item, True) for item in training] + [(item, False) for item in test_items]
    for position, (item_id, is_training) in enumerate(order):
        stims = by_item[item_id]
        buttons = [stims[c] for c in cfg.conditions] + [stims[a] for a in cfg.anchors]
        if cfg.hidden_reference:
            buttons.append(stims["reference"])
        rng.shuffle(buttons)
        trial = Trial(participant_id=participant.id, position=position, item_id=item_id, is_training=is_training,
                      reference_stimulus_id=stims["reference"].id, started_at=utcnow() if position == 0 else None)
        session.add(trial)
        session.flush()
        for index, stim in enumerate(buttons):
            session.add(Rating(trial_id=trial.id, button_index=index, stimulus_id=stim.id))
    return len(order)
