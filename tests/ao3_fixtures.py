"""Small AO3-shaped documents written for the tests: an HTML download, a work page, an EPUB.

The markup follows the structure of AO3's downloads and work pages (class names and nesting);
every word of text is made up here. The story text uses the tiny taxonomy's vocabulary
(see conftest.VOCAB) so the hashing-encoder model finds its tags.
"""

from __future__ import annotations

import html
from pathlib import Path

TITLE = "Weather Report"
AUTHOR = "test_author"
FREEFORM = ["Alternate Universe - Rain", "baking!", "Soft Boys", "Slow Burn"]
RELATIONSHIPS = ["Alex/Sam"]
CHARACTERS = ["Alex", "Sam"]
FANDOMS = ["Original Work"]
WARNINGS = ["No Archive Warnings Apply"]
RATING = "General Audiences"
SUMMARY = "It rains for a week. Someone bakes."

CHAPTERS: list[tuple[str, list[str]]] = [
    (
        "Chapter 1: Storm",
        [
            "The rain came down and the storm rolled over the wet streets, thunder after thunder.",
            "She held the umbrella over a puddle, soaked, and the cloud broke into drizzle again.",
            "",
            "Rain and more rain: storm, umbrella, puddle, thunder, drizzle, soaked, wet cloud.",
        ],
    ),
    (
        "Chapter 2: Flour",
        [
            "He measured the flour into the bowl and lit the oven, sugar and icing on the table.",
            "The cake rose while they whisked the batter, frosting and baking until late.",
        ],
    ),
    (
        "Chapter 3: Quiet",
        [
            "They walked over to the window and said nothing, and then they looked at it.",
            "It was late. She said it was over, and he walked into the hall and then looked back.",
        ],
    ),
]


def _links(tags: list[str]) -> str:
    return ", ".join(f'<a href="/tags/{i}">{html.escape(t)}</a>' for i, t in enumerate(tags))


def _paras(paras: list[str]) -> str:
    return "\n".join(f"<p>{html.escape(p)}</p>" if p else "<p>&nbsp;</p>" for p in paras)


def preface(freeform: list[str] = FREEFORM) -> str:
    """The download's ``#preface``: message, tag list, title, byline, summary."""
    return f"""<div id="preface">
  <p class="message"><b>{TITLE}</b><br/>Posted on an archive at <a href="#">somewhere</a>.</p>
  <div class="meta">
    <dl class="tags">
      <dt>Rating:</dt><dd>{_links([RATING])}</dd>
      <dt>Archive Warning:</dt><dd>{_links(WARNINGS)}</dd>
      <dt>Fandom:</dt><dd>{_links(FANDOMS)}</dd>
      <dt>Relationship:</dt><dd>{_links(RELATIONSHIPS)}</dd>
      <dt>Character:</dt><dd>{_links(CHARACTERS)}</dd>
      <dt>Additional Tags:</dt><dd>{_links(freeform)}</dd>
      <dt>Language:</dt><dd>English</dd>
      <dt>Stats:</dt><dd>Published: 2020-01-01 Words: 120</dd>
    </dl>
    <h1>{TITLE}</h1>
    <div class="byline">by <a rel="author" href="#">{AUTHOR}</a></div>
    <p>Summary</p>
    <blockquote class="userstuff"><p>{html.escape(SUMMARY)}</p></blockquote>
  </div>
</div>"""


def chapter_blocks(chapters: list[tuple[str, list[str]]] = CHAPTERS) -> str:
    """``div.meta`` (heading, notes) then ``div.userstuff`` per chapter, as in a download."""
    return "\n".join(
        f"""<div class="meta group"><h2 class="heading">{html.escape(title)}</h2>
  <p>Chapter Notes</p><blockquote class="userstuff"><p>Notes are not story text.</p></blockquote>
</div>
<div class="userstuff">{_paras(paras)}</div>"""
        for title, paras in chapters
    )


def download_html(freeform: list[str] = FREEFORM) -> str:
    """An AO3-style HTML download with three chapters."""
    return f"""<!DOCTYPE html>
<html><head><meta charset="UTF-8"/><title>{TITLE} - {AUTHOR}</title></head>
<body>
{preface(freeform)}
<div id="chapters" class="userstuff">
{chapter_blocks()}
</div>
<div id="afterword"><p>Afterword text is not story text.</p></div>
</body></html>
"""


def work_page_html() -> str:
    """A work page as saved from the browser: ``dl.work.meta`` and ``div.chapter`` blocks."""

    def dd(kind: str, tags: list[str]) -> str:
        items = "".join(f'<li><a class="tag" href="#">{html.escape(t)}</a></li>' for t in tags)
        return (
            f'<dt class="{kind} tags">{kind.title()}:</dt>'
            f'<dd class="{kind} tags"><ul class="commas">{items}</ul></dd>'
        )

    chapters = "\n".join(
        f"""<div class="chapter" id="chapter-{i}">
  <div class="chapter preface group" role="complementary">
    <h3 class="title"><a href="#">{html.escape(title.split(":")[0])}</a>:{
            html.escape(title.split(":", 1)[1])
        }</h3>
  </div>
  <div class="userstuff module" role="article">
    <h3 class="landmark heading" id="work">Chapter Text</h3>
    {_paras(paras)}
  </div>
</div>"""
        for i, (title, paras) in enumerate(CHAPTERS, 1)
    )
    return f"""<!DOCTYPE html><html><head><title>{TITLE}</title>
<script>var x = "not story text";</script></head>
<body><div id="outer"><div id="main" class="works-show region">
<div class="wrapper"><dl class="work meta group">
{dd("rating", [RATING])}{dd("warning", WARNINGS)}{dd("fandom", FANDOMS)}
{dd("relationship", RELATIONSHIPS)}{dd("character", CHARACTERS)}{dd("freeform", FREEFORM)}
<dt class="stats">Stats:</dt><dd class="stats">Words: 120</dd>
</dl></div>
<div id="workskin">
  <div class="preface group">
    <h2 class="title heading">{TITLE}</h2>
    <h3 class="byline heading"><a rel="author" href="#">{AUTHOR}</a></h3>
    <div class="summary module"><h3 class="heading">Summary:</h3>
      <blockquote class="userstuff"><p>{html.escape(SUMMARY)}</p></blockquote></div>
  </div>
  <div id="chapters" role="article">
{chapters}
  </div>
</div></div></div></body></html>
"""


def write_epub(path: Path, freeform: list[str] = FREEFORM) -> Path:
    """An EPUB like AO3's: a preface document, then one document per chapter."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("tropeml-test-epub")
    book.set_title(TITLE)
    book.set_language("en")
    book.add_author(AUTHOR)
    docs = []
    pre = epub.EpubHtml(title="Preface", file_name="preface.xhtml", lang="en")
    pre.content = f"<html><body>{preface(freeform)}</body></html>"
    docs.append(pre)
    for i, chapter in enumerate(CHAPTERS, 1):
        doc = epub.EpubHtml(title=chapter[0], file_name=f"chapter_{i}.xhtml", lang="en")
        doc.content = (
            f'<html><body><div id="chapters" class="userstuff">'
            f"{chapter_blocks([chapter])}</div></body></html>"
        )
        docs.append(doc)
    for doc in docs:
        book.add_item(doc)
    book.toc = tuple(docs)
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *docs]
    path.parent.mkdir(parents=True, exist_ok=True)
    epub.write_epub(str(path), book)
    return path
