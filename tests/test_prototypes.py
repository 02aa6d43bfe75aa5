from __future__ import annotations

import numpy as np

from tropeml.core.taxonomy import Taxonomy
from tropeml.model.dataset import embed_prototypes
from tropeml.model.encoders import HashingEncoder

RAW = {
    "trope": [
        {"id": "rain", "name": "Rain", "definition": "It rains all day."},
        {
            "id": "cake",
            "name": "Cake",
            "definition": "Someone bakes a cake.",
            "scenes": [
                "She iced the sponge.",
                "The oven timer rang and the kitchen smelled sweet.",
            ],
        },
    ]
}


def test_prototypes_blend_definition_and_scenes() -> None:
    tax = Taxonomy.from_dict(RAW)
    enc = HashingEncoder(64)
    P = embed_prototypes(tax, enc)
    assert P.shape == (2, 64) and P.dtype == np.float32
    assert np.allclose(np.linalg.norm(P, axis=1), 1.0, atol=1e-5)
    definitions = enc.embed([t.description for t in tax.values()])
    assert np.allclose(P[0], definitions[0], atol=1e-6)  # no scenes: the definition alone
    scenes = enc.embed(list(tax["cake"].scenes)).mean(axis=0)
    # with scenes: between the definition and the scenes' mean, closer to each than they are
    assert P[1] @ definitions[1] > definitions[1] @ scenes / np.linalg.norm(scenes)
    assert P[1] @ scenes > definitions[1] @ scenes
