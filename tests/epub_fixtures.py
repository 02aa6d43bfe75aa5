"""EPUBs made for the write tests: FanFicFare-style (EPUB 2, with its own subjects), DRM'd.

FanFicFare writes an EPUB 2 package whose ``dc:subject`` entries hold the fic's fandom,
status and AO3 tags; the helpers build that shape by hand with zipfile (mimetype first and
stored), and the story text uses the tiny taxonomy's vocabulary (conftest.VOCAB).
"""

from __future__ import annotations

import html
import zipfile
from pathlib import Path

CONTAINER = """<?xml version="1.0" encoding="UTF-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="content.opf" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>
"""

FFF_SUBJECTS = ["FanFiction", "Original Work", "Completed", "Slow Burn"]

RAIN = (
    "The rain came down and the storm rolled over the wet streets, thunder after thunder. "
    "She held the umbrella over a puddle, soaked, and the cloud broke into drizzle again."
)
CAKE = (
    "He measured the flour into the bowl and lit the oven, sugar and icing on the table. "
    "The cake rose while they whisked the batter, frosting and baking until late."
)
SWORD = (
    "The duel began: sword against sword, a blade, a parry, steel on steel, the hilt, a "
    "lunge, the scabbard thrown aside, fencing until dawn."
)


def opf(title: str, subjects: list[str], chapters: int) -> str:
    subj = "\n".join(f"    <dc:subject>{html.escape(s)}</dc:subject>" for s in subjects)
    items = "\n".join(
        f'    <item id="file{i}" href="OEBPS/file{i}.xhtml" media-type="application/xhtml+xml"/>'
        for i in range(1, chapters + 1)
    )
    refs = "\n".join(f'    <itemref idref="file{i}" linear="yes"/>' for i in range(1, chapters + 1))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<package version="2.0" xmlns="http://www.idpf.org/2007/opf" unique-identifier="fanficfare-uid">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:opf="http://www.idpf.org/2007/opf">
    <dc:identifier id="fanficfare-uid">ao3-12345</dc:identifier>
    <dc:title>{html.escape(title)}</dc:title>
    <dc:creator opf:role="aut">test_author</dc:creator>
    <dc:contributor opf:role="bkp">FanFicFare [https://github.com/JimmXinu/FanFicFare]</dc:contributor>
    <dc:language>en</dc:language>
{subj}
    <dc:description>It rains. Someone bakes.</dc:description>
    <meta name="calibre:series" content="A Series"/>
  </metadata>
  <manifest>
    <item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>
{items}
  </manifest>
  <spine toc="ncx">
{refs}
  </spine>
</package>
"""


NCX = """<?xml version="1.0" encoding="UTF-8"?>
<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">
  <head><meta name="dtb:uid" content="ao3-12345"/></head>
  <docTitle><text>t</text></docTitle>
  <navMap><navPoint id="p1" playOrder="1"><navLabel><text>1</text></navLabel>
  <content src="OEBPS/file1.xhtml"/></navPoint></navMap>
</ncx>
"""


def chapter(n: int, text: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" "http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Chapter {n}</title></head>
<body><h3>Chapter {n}</h3><p>{html.escape(text)}</p><p>{html.escape(text)}</p></body></html>
"""


def write_fff_epub(
    path: Path,
    title: str = "Puddles",
    subjects: list[str] | None = None,
    texts: tuple[str, ...] = (RAIN, CAKE),
    extra: dict[str, bytes] | None = None,
) -> Path:
    """A FanFicFare-style EPUB 2: its own subjects, one XHTML file per chapter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
        deflated = {"compress_type": zipfile.ZIP_DEFLATED}
        zf.writestr("META-INF/container.xml", CONTAINER, **deflated)
        zf.writestr("content.opf", opf(title, subjects or FFF_SUBJECTS, len(texts)), **deflated)
        zf.writestr("toc.ncx", NCX, **deflated)
        for i, text in enumerate(texts, 1):
            zf.writestr(f"OEBPS/file{i}.xhtml", chapter(i, text), **deflated)
        for name, data in (extra or {}).items():
            zf.writestr(name, data, **deflated)
    return path


ENCRYPTION = """<?xml version="1.0" encoding="UTF-8"?>
<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"
            xmlns:enc="http://www.w3.org/2001/04/xmlenc#"
            xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
  <enc:EncryptedData>
    <enc:EncryptionMethod Algorithm="{algorithm}"/>
    <ds:KeyInfo><ds:KeyName>urn:uuid:0000</ds:KeyName></ds:KeyInfo>
    <enc:CipherData><enc:CipherReference URI="{uri}"/></enc:CipherData>
  </enc:EncryptedData>
</encryption>
"""


def write_drm_epub(path: Path) -> Path:
    """An EPUB whose chapter is listed as AES-encrypted in META-INF/encryption.xml (DRM)."""
    enc = ENCRYPTION.format(algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc", uri="x")
    return write_fff_epub(path, extra={"META-INF/encryption.xml": enc.encode()})


def write_font_obfuscated_epub(path: Path) -> Path:
    """An EPUB whose encryption.xml only obfuscates a font (IDPF algorithm): not DRM."""
    enc = ENCRYPTION.format(algorithm="http://www.idpf.org/2008/embedding", uri="fonts/a.otf")
    extra = {"META-INF/encryption.xml": enc.encode(), "fonts/a.otf": b"\x00font"}
    return write_fff_epub(path, extra=extra)
