"""A trope that exists only in the taxonomy (a definition, no labels) is still predicted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tropeml import Tagger, TropeClassifier
from tropeml.model.cache import CachedEncoder
from tropeml.model.encoders import SentenceTransformerEncoder
from tropeml.model.training import prepare

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration

NEW_TROPE = '''

[[trope]]
id = "time_loop"
name = "Time Loop"
synonyms = ["Time Loop", "Groundhog Day AU"]
definition = """A character is trapped reliving the same stretch of time over and over: they
wake to the same morning, the same events repeat exactly, and only they remember the earlier
loops. The passage shows the repetition itself or the character's awareness that the day has
reset."""
'''

LOOP = (
    "The alarm went off at 6:14, the same song, the same cracked ceiling. Mara lay very "
    "still. Yesterday had been Tuesday the ninth. So had the day before, and the one before "
    "that. She knew the mailman would trip on the third step at 7:02, that the radio would "
    "announce rain that never came, that her brother would spill coffee on the same blue "
    "shirt. She had stopped counting at forty. Every night she fell asleep, and every morning "
    "the world reset to 6:14 and Tuesday the ninth, and nobody but her remembered a thing."
)
BAKING = (
    "Theo pulled the tray out of the oven and frowned at the lopsided sponge. Flour dusted "
    'his eyebrows. "It\'s supposed to rise," he said. June laughed and handed him the icing '
    'bag. "We\'ll hide it under frosting. Nobody checks the middle of a birthday cake." They '
    "piped crooked stars across the top while the kitchen filled with the smell of vanilla."
)


@pytest.fixture(scope="module")
def zero_shot_tagger(tmp_path_factory: pytest.TempPathFactory) -> Tagger:
    root = tmp_path_factory.mktemp("zs")
    data = root / "data"
    (data / "labels").mkdir(parents=True)
    (data / "exemplars").mkdir()
    (data / "tropes.toml").write_text(
        (ROOT / "data" / "tropes.toml").read_text(encoding="utf-8") + NEW_TROPE, encoding="utf-8"
    )
    for path in sorted((ROOT / "data" / "exemplars").glob("*.jsonl")):  # a subset, for speed
        lines = path.read_text(encoding="utf-8").splitlines()[:30]
        (data / "exemplars" / path.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    prepared = prepare(data, root=root, cache=root / "cache.sqlite3")
    ts = prepared.training_set
    assert ts.counts()["time_loop"] == 0  # no labels at all for the new trope
    clf = TropeClassifier(tags=ts.tags, prototypes=prepared.prototypes)
    clf.fit(prepared.X, ts.Y, groups=ts.groups)
    encoder = CachedEncoder(SentenceTransformerEncoder(), root / "cache.sqlite3")
    return Tagger(clf, prepared.taxonomy, encoder, name="zero-shot")


def test_unlabelled_trope_is_predicted_when_shown(zero_shot_tagger: Tagger) -> None:
    result = zero_shot_tagger.tag(LOOP)
    assert "time_loop" in [t.id for t in result.tags]
    assert result.scores["time_loop"] > zero_shot_tagger.tag(BAKING).scores["time_loop"]


def test_unlabelled_trope_is_not_predicted_when_absent(zero_shot_tagger: Tagger) -> None:
    assert "time_loop" not in [t.id for t in zero_shot_tagger.tag(BAKING).tags]
