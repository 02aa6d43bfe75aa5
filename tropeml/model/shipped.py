"""The work calibrator the shipped model (``models/default``) was tuned with.

``tropeml train`` writes it into every model's config until ``tropeml tune`` fits the
model's own (:mod:`tropeml.model.workcal`).
"""

from __future__ import annotations

from tropeml.io.devset import REQUIRED_TAGS
from tropeml.model.workcal import CrossScore, WorkCalibrator

WORK_CALIBRATOR = WorkCalibrator(
    intercept=-1.349104,
    weights=(
        0.552705,
        0.114391,
        -0.199604,
        0.134981,
        -0.11036,
        -0.16983,
        0.20563,
        0.316613,
        0.378618,
        0.180375,
    ),
    tags={
        "hurt_comfort": 0.482167,
        "fake_death": -0.511081,
        "reunion": -0.278275,
        "soulmates": -0.021444,
        "mates": -0.100252,
        "alpha_beta_omega": -0.008222,
        "angst": 0.540901,
        "fluff": 0.364345,
        "first_kiss": -0.249936,
        "love_confession": -0.22708,
        "grief": 0.527746,
        "on_the_run": -0.61772,
        "apology": 0.356182,
        "protectiveness": 1.131315,
        "cuddling": 0.523957,
        "phone_call": 1.354035,
        "happy_ending": 1.194815,
        "injury": 0.145792,
    },
    floor=0.4,
    floors={
        "fake_death": 0.65,
        "reunion": 0.5,
        **dict.fromkeys(
            (
                "grief",
                "on_the_run",
                "apology",
                "protectiveness",
                "cuddling",
                "phone_call",
                "injury",
            ),
            0.7,
        ),
        "happy_ending": 0.69,
    },
    cross={
        "happy_ending": CrossScore(
            -0.065495,
            {"happy_ending": 0.176876, "fluff": 0.481808, "angst": 0.095392, "grief": -0.543759},
            "ending",
        )
    },
    sure=dict.fromkeys(REQUIRED_TAGS, 0.7),
)
"""The shipped calibrator: fitted by :func:`~tropeml.model.workcal.fit_work_calibrator` on the
2,550 judged (work, required tag) pairs of the 93 dev works and the 171 works of the first
fourteen confirmation rounds, and tested on the fifteenth round before it shipped; its floor
of 0.4 (the highest that kept the dev recall target when held out) was tested on the
sixteenth (``data/confirm/README.md``); reunion's of 0.5 (the highest that keeps it, on
the dev works) on the twenty-seventh; fake_death's of 0.65 and the sure score of 0.7 for the
ten required tags (shown from it, chance rule or not), chosen on the 578 read works, on the
twenty-ninth and thirtieth. The eight other tags' offsets were fitted afterwards
by :func:`~tropeml.model.workcal.fit_tag_offsets` (``tropeml tune --tag``) on the 212 dev
and confirmation works judged for them, with the shared weights kept, and their floor of 0.7
(they are shown only when the model is fairly sure) was tested on the twentieth round.
happy_ending is read from the work's ending (a cross score on the best passages of
happy_ending, fluff, angst and grief in its last tenth, shown from 0.69), first fitted by
``benchmarks/crosstag.py fit --ending`` on the 379 dev and confirmation works judged for it
and tested on the twenty-fourth round, then refitted on all 439 and tested on the
twenty-sixth; the cross scores on every tag's score that
happy_ending and first_kiss carried from the twenty-first test ranked no better than the
tags' own scores on public-domain prose and left with the twenty-third. Models trained on
other data get it until ``tropeml tune`` fits their own (keeping the floors and sure scores)."""
