#!/usr/bin/env python3
"""Builds the benchmark's corpus databases: kinds of SQLite database other than the CRM generator's.

    python3 bench/corpus.py --kind text --out text.db --size-mib 200 --seed 1 --scratch DIR

Kinds (each grows until the file reaches --size-mib):
  text     a knowledge base: articles and comments, real prose (man page passages, about one in six
           in another language), little else
  blobs    uploads kept in the database: photos (JPEG), scanned pages (JPEG in a PDF), PDFs made by
           groff, screenshots (PNG), Office documents (zip), CSV/JSON/text files
  indexes  web analytics: one narrow table of page views under eight secondary indexes, which take
           more room than the table itself
  deletes  a mailbox after a retention purge and user deletes: about 60% of the file is free pages
           still holding the deleted messages (secure_delete off, as SQLite ships by default)

Content is made from what Debian installs, never random bytes: prose from the English (and some
other) man pages under /usr/share/man, pictures drawn by ImageMagick (/usr/bin/convert) with the
DejaVu fonts, PDFs rendered by groff. The same seed and the same installed man pages give the
same database. Standard library only; ImageMagick and groff are needed for `blobs` and `deletes`.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

MIB = 1024 * 1024
MAN = Path("/usr/share/man")
CONVERT = "/usr/bin/convert"  # the real ImageMagick, not a stand-in earlier on PATH
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
MONO = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
EPOCH = datetime.datetime(2021, 3, 1, 8, 0, 0)

FIRST = ("Anna Ben Carla David Elena Farid Grace Hiro Ines Jonas Kemal Lena Marco Nadia Olga Pedro Qi "
         "Rosa Sven Tariq Uma Victor Wen Ximena Yusuf Zoe Amara Bruno Chloe Dmitri Emma Felix Greta "
         "Hugo Ida Jamal Kaito Lucia Mateo Noor").split()
LAST = ("Adams Becker Costa Dubois Eriksen Fischer Garcia Haddad Ivanova Jensen Kowalski Larsen Moreau "
        "Nakamura Okafor Petrov Quinn Rossi Schmidt Tanaka Ueda Vargas Weber Xu Yilmaz Zhang Novak "
        "Silva Horvat Lindqvist Murphy Kaur Mensah Dawson Ferreira Nguyen Sato Bauer Romero Olsen").split()
DOMAINS = "example.com example.org example.net mail.example mx.example.co.uk".split()


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Prose from the man pages

ESCAPES = [
    (re.compile(r'\\".*$'), ""),                                   # comment
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),                   # font changes
    (re.compile(r"\\s[+-]?\d+"), ""),                              # size changes
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),                  # strings
    (re.compile(r"\\n(\[[^\]]*\]|\(..|.)"), ""),                   # registers
    (re.compile(r"\\[hvwlLDxkSbXZRoH]'[^']*'"), ""),               # motions and drawing
    (re.compile(r"\\\(aq|\\\[aq\]"), "'"),
    (re.compile(r"\\\(dq|\\\[dq\]"), '"'),
    (re.compile(r"\\\(em|\\\[em\]"), "\u2014"),
    (re.compile(r"\\\(en|\\\[en\]"), "\u2013"),
    (re.compile(r"\\\(bu|\\\[bu\]"), "\u2022"),
    (re.compile(r"\\\(co|\\\[co\]"), "\u00a9"),
    (re.compile(r"\\\(..|\\\[[^\]]*\]"), ""),                      # other special characters
    (re.compile(r"\\[-e]"), lambda m: "-" if m.group(0) == "\\-" else "\\"),
    (re.compile(r"\\[&/,:%|^~0 !]"), lambda m: " " if m.group(0) in ("\\ ", "\\~", "\\0") else ""),
    (re.compile(r"\\(.)"), r"\1"),
]
TEXT_MACROS = {"B", "I", "BR", "RB", "IR", "RI", "BI", "IB", "SM", "SB", "SH", "SS", "IP", "TP", "Nm",
               "Nd", "Ar", "Fl", "Cm", "Pa", "Xr", "Em", "Sy", "Dq", "Sq", "Ql", "Va", "Ev", "Fn", "Fa",
               "Sh", "Ss", "It", "Li", "Dv", "Er", "Ic", "Ms", "Tn", "UR", "MT", "Op"}
BREAK_MACROS = {"PP", "LP", "P", "TP", "IP", "HP", "SH", "SS", "sp", "br", "Pp", "Sh", "Ss", "It", "Bl", "El",
                "Bd", "Ed", "nf", "fi", "EX", "EE", "RS", "RE"}


def package_pages(packages):
    """The man pages (gzip files under /usr/share/man) that the installed Debian PACKAGES own, sorted."""
    pages = []
    for package in packages:
        proc = subprocess.run(["dpkg-query", "-L", package], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if proc.returncode == 0:
            pages += [Path(line) for line in proc.stdout.splitlines()
                      if line.startswith(str(MAN) + "/") and line.endswith(".gz") and Path(line).is_file()
                      and not Path(line).is_symlink()]
    return sorted(set(pages))


def strip_troff(source):
    """Paragraphs of plain text from a man page's troff source (roughly: enough for prose)."""
    paragraphs, current = [], []

    def flush():
        if current:
            text = " ".join(current).strip()
            text = re.sub(r"\s+", " ", text)
            if len(text) >= 40:
                paragraphs.append(text)
            current.clear()

    for line in source.splitlines():
        if line.startswith((".\\\"", "'\\\"", '."')):
            continue
        if line.startswith((".", "'")):
            parts = line[1:].strip().split(None, 1)
            if not parts:
                continue
            macro, args = parts[0], parts[1] if len(parts) > 1 else ""
            if macro in BREAK_MACROS:
                flush()
            if macro in ("IP", "TP") and args.startswith('"'):
                args = args[1:].split('"', 1)[0]  # the tag; what follows is an indent
            elif macro == "IP":
                args = args.split()[0] if args.split() else ""
            if macro in TEXT_MACROS and args:
                args = args.replace('"', "")
                for pattern, replacement in ESCAPES:
                    args = pattern.sub(replacement, args)
                if macro in ("SH", "SS", "Sh", "Ss"):
                    paragraphs.append(args.strip().capitalize())
                else:
                    current.append(args.strip())
            continue
        for pattern, replacement in ESCAPES:
            line = pattern.sub(replacement, line)
        if line.strip():
            current.append(line.strip())
        else:
            flush()
    flush()
    return paragraphs


class Prose:
    """Passages of real text: runs of consecutive paragraphs from man pages, per language. The
    pages are those of fixed Debian packages (listed by dpkg), so the same package versions give
    the same text."""

    ENGLISH = ("manpages", "manpages-dev", "git-man")
    OTHERS = ("manpages-de", "manpages-fr", "manpages-es", "manpages-ru", "manpages-ja", "manpages-zh")

    def __init__(self, rng, english_bytes, other_bytes):
        self.paragraphs = {}
        self.paragraphs["en"] = self.read(rng, package_pages(self.ENGLISH), english_bytes)
        if sum(len(p) for p in self.paragraphs["en"]) < min(english_bytes, MIB):
            raise SystemExit(f"error: too little English man page text from the Debian packages {', '.join(self.ENGLISH)}: "
                             "install them, and keep man pages (no path-exclude for /usr/share/man in /etc/dpkg/dpkg.cfg.d)")
        others = {}
        for page in package_pages(self.OTHERS):
            others.setdefault(page.relative_to(MAN).parts[0].split("_")[0], []).append(page)
        for language, pages in sorted(others.items()):
            paragraphs = self.read(rng, pages, other_bytes // max(1, len(others)))
            if len(paragraphs) >= 20:
                self.paragraphs[language] = paragraphs
        self.languages = sorted(self.paragraphs)
        words = set()
        for paragraph in self.paragraphs["en"]:
            words.update(re.findall(r"\b[a-z]{4,12}\b", paragraph))
        self.words = sorted(words)
        log(f"   prose: {sum(len(p) for p in self.paragraphs['en']) / MIB:.1f} MiB of English "
            f"({len(self.paragraphs['en'])} paragraphs); other languages: {', '.join(l for l in self.languages if l != 'en') or 'none'}")

    @staticmethod
    def read(rng, files, limit):
        files = list(files)
        rng.shuffle(files)
        paragraphs, total = [], 0
        for path in files:
            if total >= limit:
                break
            try:
                with gzip.open(path, "rt", encoding="utf-8", errors="replace") as handle:
                    source = handle.read()
            except (OSError, EOFError):
                continue
            if source.startswith(".so "):
                continue  # an alias of another page
            found = strip_troff(source)
            paragraphs.extend(found)
            total += sum(len(p) for p in found)
        return paragraphs

    def language(self, rng):
        """English five times in six, else one of the others present."""
        others = [l for l in self.languages if l != "en"]
        return "en" if not others or rng.random() < 5 / 6 else rng.choice(others)

    def passage(self, rng, length, language="en"):
        """About `length` characters of consecutive paragraphs, starting anywhere."""
        paragraphs = self.paragraphs[language]
        start = rng.randrange(len(paragraphs))
        out, total = [], 0
        while total < length:
            paragraph = paragraphs[(start + len(out)) % len(paragraphs)]
            out.append(paragraph)
            total += len(paragraph) + 2
            if len(out) >= len(paragraphs):
                break
        return "\n\n".join(out)

    def sentence(self, rng, words=(3, 9)):
        return " ".join(rng.choice(self.words) for _ in range(rng.randint(*words))).capitalize()


# ---------------------------------------------------------------------------------------------
# Files people upload


def jpeg_size(data):
    """(width, height) from a JPEG's start-of-frame marker."""
    i = 2
    while i < len(data) - 9:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    raise ValueError("no start-of-frame marker in the JPEG")


def pdf_with_jpeg(jpeg, title):
    """A one-page PDF showing a JPEG at 150 dpi, as a scanner writes it."""
    width, height = jpeg_size(jpeg)
    page_w, page_h = width * 72 / 150, height * 72 / 150
    content = f"q {page_w:.2f} 0 0 {page_h:.2f} 0 0 cm /Im0 Do Q\n".encode()
    gray = b"/DeviceGray" if jpeg[:4096].find(b"\xff\xc0\x00\x0b\x08") >= 0 or jpeg[:4096].find(b"\xff\xc2\x00\x0b\x08") >= 0 else b"/DeviceRGB"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {page_w:.2f} {page_h:.2f}] "
        "/Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>".encode(),
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace %s /BitsPerComponent 8 "
        b"/Filter /DCTDecode /Length %d >>\nstream\n" % (width, height, gray, len(jpeg)) + jpeg + b"\nendstream",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"endstream",
        f"<< /Title ({title}) /Producer (scanner) >>".encode(),
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def docx(rng, prose, paragraphs):
    """A word-processor document: the zip layout of a .docx with real text in its XML."""
    body = "".join(f"<w:p><w:r><w:t xml:space=\"preserve\">{escape_xml(prose.passage(rng, rng.randint(200, 1500)))}"
                   "</w:t></w:r></w:p>" for _ in range(paragraphs))
    document = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document xmlns:w='
                '"http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>' + body + "</w:body></w:document>")
    out = io.BytesIO()
    stamp = (2023, 1, 1, 0, 0, 0)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (
            ("[Content_Types].xml", '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
             'package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override '
             'PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.'
             'wordprocessingml.document.main+xml"/></Types>'),
            ("_rels/.rels", '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
             'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
             '2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>'),
            ("word/document.xml", document),
        ):
            archive.writestr(zipfile.ZipInfo(name, stamp), text)
    return out.getvalue()


def escape_xml(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_man(page, width=None):
    """A man page as formatted text (groff -Tutf8), or None when groff cannot format it."""
    try:
        with gzip.open(page, "rb") as handle:
            source = handle.read()
        env = dict(os.environ, LC_ALL="C.UTF-8")
        args = ["groff", "-man", "-Tutf8", "-P-cbou"] + ([f"-rLL={width}n"] if width else [])
        proc = subprocess.run(args, input=source, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, timeout=60)
        return proc.stdout.decode("utf-8", "replace") if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def annotate_text(text):
    """Text for ImageMagick's -annotate: its % escapes and backslashes made literal."""
    return text.replace("\\", "\\\\").replace("%", "%%")


class Uploads:
    """Pools of files made once per database in a scratch folder: photos, scanned pages, text PDFs
    and screenshots (the slow ones to make); Office documents and text files are made per upload."""

    def __init__(self, rng, prose, scratch, scale):
        self.rng, self.prose, self.scratch = rng, prose, Path(scratch)
        self.scratch.mkdir(parents=True, exist_ok=True)
        for tool in (CONVERT, "groff"):
            if subprocess.run(["sh", "-c", f"command -v {tool}"], stdout=subprocess.DEVNULL).returncode != 0:
                raise SystemExit(f"error: {tool} is missing: install the Debian packages imagemagick and groff")
        if not Path(FONT).exists():
            raise SystemExit(f"error: {FONT} is missing: install the Debian package fonts-dejavu-core")
        pages = package_pages(Prose.ENGLISH)
        self.man_pages = [p for p in pages if 3000 < p.stat().st_size < 40000]
        self.photo_sizes = scale["photo_sizes"]
        self.photos = self.make_photos(scale["photo_sources"])
        self.scans = self.make_scans(scale["scans"])
        self.pdfs = self.make_pdfs(scale["pdfs"])
        self.screenshots = self.make_screenshots(scale["screenshots"])

    def convert(self, args):
        proc = subprocess.run([CONVERT] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            raise SystemExit(f"error: ImageMagick convert failed: {proc.stderr.decode(errors='replace')[-400:]}")

    def make_photos(self, sources):
        """Photo-like JPEGs: plasma fractals (smooth colour with grain), each source as a full-size
        picture, four crops and nine thumbnails, at varying quality."""
        out = []
        for index in range(sources):
            seed = self.rng.randrange(1 << 30)
            width, height = self.rng.choice(self.photo_sizes)
            raw = self.scratch / f"photo-{index}.ppm"
            self.convert(["-seed", str(seed), "-size", f"{width}x{height}", "plasma:fractal", "-blur", "0x0.7",
                          "-attenuate", "0.6", "+noise", "Gaussian", str(raw)])
            quality = str(self.rng.randint(82, 93))
            self.convert([str(raw), "-quality", quality, str(self.scratch / f"photo-{index}-full.jpg")])
            self.convert([str(raw), "-crop", "50%x50%", "+repage", "-quality", str(self.rng.randint(75, 90)),
                          str(self.scratch / f"photo-{index}-half-%d.jpg")])
            self.convert([str(raw), "-resize", "60%", "-crop", "33%x33%", "+repage", "-quality",
                          str(self.rng.randint(70, 85)), str(self.scratch / f"photo-{index}-small-%d.jpg")])
            raw.unlink()
            out += sorted(self.scratch.glob(f"photo-{index}-*.jpg"))
        return [p.read_bytes() for p in out]

    def make_scans(self, count):
        """Scanned pages: a man page set in DejaVu Sans on A4 at 150 dpi, slightly rotated, with
        scanner grain, grey JPEG."""
        out = []
        for index in range(count):
            text = None
            while not text:
                text = render_man(self.rng.choice(self.man_pages), width=78)
            lines = text.splitlines()
            start = self.rng.randrange(max(1, len(lines) - 60))
            path = self.scratch / f"scan-{index}.jpg"
            self.convert(["-size", "1240x1754", "xc:white", "-font", FONT, "-pointsize", "17", "-fill", "#202020",
                          "-annotate", "+90+110", annotate_text("\n".join(lines[start:start + 64])),
                          "-background", "white", "-rotate", f"{self.rng.uniform(-0.8, 0.8):.2f}",
                          "-attenuate", "0.4", "+noise", "Gaussian", "-colorspace", "Gray",
                          "-quality", str(self.rng.randint(65, 80)), str(path)])
            out.append(path.read_bytes())
        return out

    def make_pdfs(self, count):
        """Text PDFs: man pages typeset by groff (gropdf: compressed streams, embedded fonts)."""
        out = []
        while len(out) < count:
            page = self.rng.choice(self.man_pages)
            with gzip.open(page, "rb") as handle:
                source = handle.read()
            proc = subprocess.run(["groff", "-man", "-Tpdf"], input=source, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, timeout=120)
            if proc.returncode == 0 and proc.stdout.startswith(b"%PDF"):
                out.append(proc.stdout)
        return out

    def make_screenshots(self, count):
        """Screenshots (PNG): a terminal window showing a man page, in a desktop-like frame."""
        out = []
        for index in range(count):
            text = None
            while not text:
                text = render_man(self.rng.choice(self.man_pages), width=110)
            lines = text.splitlines()[:48]
            path = self.scratch / f"screen-{index}.png"
            background = self.rng.choice(["#2b2b2b", "#1e1e2e", "#fdf6e3", "#ffffff"])
            ink = "#e0e0e0" if background in ("#2b2b2b", "#1e1e2e") else "#303030"
            self.convert(["-size", "1440x900", "gradient:#3a6ea5-#16324f", "-fill", "#d9d9d9", "-draw",
                          "rectangle 60,40 1380,860", "-fill", background, "-draw", "rectangle 62,72 1378,858",
                          "-fill", "#505050", "-font", FONT, "-pointsize", "14", "-annotate", "+80+62", "Terminal",
                          "-fill", ink, "-font", MONO, "-pointsize", "13", "-annotate", "+76+92",
                          annotate_text("\n".join(lines)), str(path)])
            out.append(path.read_bytes())
        return out

    # -- one upload ----------------------------------------------------------------------------

    KINDS = [  # kind, share of the bytes
        ("photo", 0.50), ("scan", 0.10), ("pdf", 0.10), ("screenshot", 0.07), ("docx", 0.08), ("text", 0.15),
    ]

    def make(self, kind, stamp):
        rng = self.rng
        if kind == "photo":
            return f"IMG_{stamp:%Y%m%d_%H%M%S}.jpg", "image/jpeg", rng.choice(self.photos)
        if kind == "scan":
            data = pdf_with_jpeg(rng.choice(self.scans), f"Scan {stamp:%Y-%m-%d %H:%M}")
            return f"scan_{stamp:%Y%m%d}_{rng.randrange(1000):03d}.pdf", "application/pdf", data
        if kind == "pdf":
            return f"{rng.choice(self.prose.words)}-{rng.choice(self.prose.words)}.pdf", "application/pdf", rng.choice(self.pdfs)
        if kind == "screenshot":
            return f"Screenshot {stamp:%Y-%m-%d at %H.%M.%S}.png", "image/png", rng.choice(self.screenshots)
        if kind == "docx":
            return (f"{self.prose.sentence(rng, (2, 4))}.docx", "application/vnd.openxmlformats-officedocument."
                    "wordprocessingml.document", docx(rng, self.prose, rng.randint(4, 40)))
        return self.text_file(stamp)

    def text_file(self, stamp):
        rng = self.rng
        choice = rng.random()
        if choice < 0.4:  # a CSV export
            rows = ["date,invoice,customer,item,quantity,unit_price,total"]
            day = stamp
            for _ in range(rng.randint(50, 3000)):
                day += datetime.timedelta(minutes=rng.randint(1, 600))
                quantity, price = rng.randint(1, 20), rng.randint(99, 99999) / 100
                rows.append(f"{day:%Y-%m-%d},INV-{rng.randint(10000, 99999)},{rng.choice(FIRST)} {rng.choice(LAST)},"
                            f"{rng.choice(self.prose.words)} {rng.choice(self.prose.words)},{quantity},{price:.2f},{quantity * price:.2f}")
            return f"export-{stamp:%Y-%m-%d}.csv", "text/csv", ("\n".join(rows) + "\n").encode()
        if choice < 0.7:  # a JSON document
            items = [{"id": rng.randint(1, 10**6), "name": self.prose.sentence(rng, (1, 3)),
                      "tags": [rng.choice(self.prose.words) for _ in range(rng.randint(0, 4))],
                      "price": rng.randint(100, 100000) / 100, "active": rng.random() < 0.8,
                      "description": self.prose.passage(rng, rng.randint(40, 400))[:400]}
                     for _ in range(rng.randint(10, 400))]
            return f"{rng.choice(self.prose.words)}.json", "application/json", json.dumps(items, indent=2).encode()
        text = self.prose.passage(rng, rng.randint(2000, 60000), self.prose.language(rng))
        return f"{rng.choice(self.prose.words)}-notes.txt", "text/plain", text.encode()


# ---------------------------------------------------------------------------------------------
# The databases


def connect(path, wal):
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA cache_size = -262144")  # 256 MiB: index inserts stay in memory
    con.execute("PRAGMA journal_mode = " + ("WAL" if wal else "DELETE"))
    con.execute("PRAGMA synchronous = OFF")  # generation only: the result is checked afterwards
    return con


def file_bytes(con):
    return con.execute("PRAGMA page_count").fetchone()[0] * con.execute("PRAGMA page_size").fetchone()[0]


def person(rng):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return f"{first} {last}", f"{first.lower()}.{last.lower()}{rng.randrange(100)}@{rng.choice(DOMAINS)}"


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def build_text(con, target, rng, prose, scratch, scale):
    con.executescript("""
        CREATE TABLE authors(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, bio TEXT);
        CREATE TABLE articles(id INTEGER PRIMARY KEY, slug TEXT NOT NULL UNIQUE, title TEXT NOT NULL,
            language TEXT NOT NULL, author_id INTEGER NOT NULL REFERENCES authors(id), created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL, tags TEXT NOT NULL, summary TEXT NOT NULL, body TEXT NOT NULL);
        CREATE TABLE comments(id INTEGER PRIMARY KEY, article_id INTEGER NOT NULL REFERENCES articles(id),
            author_id INTEGER NOT NULL REFERENCES authors(id), created_at TEXT NOT NULL, body TEXT NOT NULL);
        CREATE INDEX comments_by_article ON comments(article_id, created_at);
    """)
    con.execute("BEGIN")
    for author in range(1, 601):
        name, email = person(rng)
        con.execute("INSERT INTO authors VALUES (?, ?, ?, ?)", (author, name, f"{author}.{email}", prose.passage(rng, 120)[:300]))
    con.execute("COMMIT")
    moment, article, written = EPOCH, 0, 0
    while True:
        con.execute("BEGIN")
        for _ in range(50):
            article += 1
            moment += datetime.timedelta(seconds=rng.randint(60, 7200), milliseconds=rng.randrange(1000))
            language = prose.language(rng)
            body = prose.passage(rng, int(rng.lognormvariate(8.8, 0.8)), language)
            title = body.split("\n", 1)[0][:90]
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] + f"-{article}"
            tags = ",".join(sorted({rng.choice(prose.words) for _ in range(rng.randint(1, 5))}))
            con.execute("INSERT INTO articles VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (article, slug, title, language, rng.randint(1, 600), iso(moment), iso(moment), tags,
                         body[:280], body))
            for _ in range(rng.choice([0, 0, 1, 2, 3, 5, 8])):  # comments arrive later, on any article
                con.execute("INSERT INTO comments(article_id, author_id, created_at, body) VALUES (?,?,?,?)",
                            (rng.randint(max(1, article - 500), article), rng.randint(1, 600), iso(moment),
                             prose.passage(rng, int(rng.lognormvariate(6.0, 0.7)))[: rng.randint(80, 3000)]))
            if rng.random() < 0.08 and article > 10:  # an older article edited: its row grows
                edited = rng.randint(1, article - 1)
                con.execute("UPDATE articles SET body = body || ? || ?, updated_at = ? WHERE id = ?",
                            ("\n\n", prose.passage(rng, rng.randint(300, 3000)), iso(moment), edited))
        con.execute("COMMIT")
        written = file_bytes(con)
        if written >= target:
            return f"{article} articles"


def build_blobs(con, target, rng, prose, scratch, scale):
    uploads = Uploads(rng, prose, scratch, scale)
    con.executescript("""
        CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);
        CREATE TABLE uploads(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
            uploaded_at TEXT NOT NULL, filename TEXT NOT NULL, content_type TEXT NOT NULL, size INTEGER NOT NULL,
            sha256 TEXT NOT NULL, data BLOB NOT NULL);
        CREATE INDEX uploads_by_user ON uploads(user_id, uploaded_at);
        CREATE INDEX uploads_by_hash ON uploads(sha256);
    """)
    con.execute("BEGIN")
    for user in range(1, 301):
        name, email = person(rng)
        con.execute("INSERT INTO users VALUES (?, ?, ?, ?)", (user, name, f"{user}.{email}", iso(EPOCH)))
    con.execute("COMMIT")
    shares = dict(Uploads.KINDS)
    stored = {kind: 1 for kind in shares}
    moment, count = EPOCH, 0
    while True:
        con.execute("BEGIN")
        for _ in range(20):
            # The kind furthest below its share of the bytes, so the mix holds at every size.
            kind = min(shares, key=lambda k: (stored[k] / shares[k], k))
            moment += datetime.timedelta(seconds=rng.randint(30, 5400), milliseconds=rng.randrange(1000))
            filename, content_type, data = uploads.make(kind, moment)
            stored[kind] += len(data)
            count += 1
            con.execute("INSERT INTO uploads(user_id, uploaded_at, filename, content_type, size, sha256, data) "
                        "VALUES (?,?,?,?,?,?,?)", (rng.randint(1, 300), iso(moment), filename, content_type, len(data),
                                                   hashlib.sha256(data).hexdigest(), data))
        con.execute("COMMIT")
        if file_bytes(con) >= target:
            total = sum(stored.values())
            return f"{count} uploads: " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in stored.items())


def build_indexes(con, target, rng, prose, scratch, scale):
    con.executescript("""
        CREATE TABLE page_views(id INTEGER PRIMARY KEY, viewed_at TEXT NOT NULL, visitor TEXT NOT NULL,
            session_id INTEGER NOT NULL, path TEXT NOT NULL, referrer TEXT, country TEXT NOT NULL,
            device TEXT NOT NULL, status INTEGER NOT NULL, duration_ms INTEGER NOT NULL);
        CREATE INDEX page_views_by_time ON page_views(viewed_at);
        CREATE INDEX page_views_by_visitor ON page_views(visitor, viewed_at);
        CREATE INDEX page_views_by_session ON page_views(session_id, viewed_at);
        CREATE INDEX page_views_by_path ON page_views(path, viewed_at);
        CREATE INDEX page_views_by_referrer ON page_views(referrer, viewed_at);
        CREATE INDEX page_views_by_country ON page_views(country, device, viewed_at);
        CREATE INDEX page_views_by_status ON page_views(status, viewed_at);
        CREATE INDEX page_views_by_duration ON page_views(duration_ms);
    """)
    words = prose.words
    sections = ["docs", "blog", "products", "help", "news", "account", "search", "pricing", "api"]
    pages = []
    for _ in range(4000):
        section = rng.choice(sections)
        depth = rng.choice([1, 2, 2, 3])
        pages.append("/" + section + "".join("/" + "-".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
                                             for _ in range(depth)))
    pages.sort()
    referrers = ([None] * 12 + [f"https://www.{d}/search?q={rng.choice(words)}+{rng.choice(words)}"
                                for d in ("search.example", "duck.example", "bing.example") for _ in range(200)]
                 + [f"https://{s}/{rng.choice(words)}" for s in ("news.example.com", "social.example", "forum.example.org")
                    for _ in range(100)])
    countries = ["US"] * 30 + ["DE"] * 10 + ["GB"] * 8 + ["FR"] * 7 + ["IN"] * 7 + ["BR"] * 5 + ["JP"] * 5 + \
        "CA NL ES IT PL SE AU MX KR TR CH AT BE CZ DK FI NO PT RO ZA AR CL NG KE".split()
    devices = ["desktop"] * 5 + ["mobile"] * 4 + ["tablet", "bot"]
    visitors = ["%08x-%04x-4%03x-%04x-%012x" % (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12),
                                                 0x8000 | rng.getrandbits(14), rng.getrandbits(48)) for _ in range(60000)]
    moment, session, rows = EPOCH, 0, 0
    active = []  # sessions in progress: [session id, visitor, views left, country, device, referrer, page]
    while True:
        batch = []
        for _ in range(5000):
            while len(active) < 40:
                session += 1
                active.append([session, rng.choice(visitors), int(rng.expovariate(1 / 6)) + 1, rng.choice(countries),
                               rng.choice(devices), rng.choice(referrers), rng.randrange(len(pages))])
            current = rng.randrange(len(active))
            sid, visitor, left, country, device, referrer, page = active[current]
            moment += datetime.timedelta(milliseconds=rng.randint(5, 4000))
            status = 200 if rng.random() < 0.95 else rng.choice([301, 304, 404, 404, 500])
            batch.append((iso(moment), visitor, sid, pages[page], referrer, country, device, status,
                          int(rng.lognormvariate(5.0, 0.9))))
            rows += 1
            next_page = min(len(pages) - 1, max(0, page + rng.randint(-40, 40))) if rng.random() < 0.7 else rng.randrange(len(pages))
            active[current] = [sid, visitor, left - 1, country, device, pages[page], next_page]
            if left <= 1:
                active.pop(current)
        con.execute("BEGIN")
        con.executemany("INSERT INTO page_views(viewed_at, visitor, session_id, path, referrer, country, device, status, "
                        "duration_ms) VALUES (?,?,?,?,?,?,?,?,?)", batch)
        con.execute("COMMIT")
        if file_bytes(con) >= target:
            return f"{rows} page views"


def build_deletes(con, target, rng, prose, scratch, scale):
    con.execute("PRAGMA secure_delete = OFF")  # SQLite's own default; Debian's build turns it on
    con.executescript("""
        CREATE TABLE folders(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
        CREATE TABLE messages(id INTEGER PRIMARY KEY, folder_id INTEGER NOT NULL REFERENCES folders(id),
            received_at TEXT NOT NULL, sender TEXT NOT NULL, recipient TEXT NOT NULL, subject TEXT NOT NULL,
            headers TEXT NOT NULL, body TEXT NOT NULL, attachment_name TEXT, attachment BLOB,
            is_read INTEGER NOT NULL DEFAULT 0);
        CREATE INDEX messages_by_folder ON messages(folder_id, received_at);
        CREATE INDEX messages_by_sender ON messages(sender);
    """)
    con.executemany("INSERT INTO folders(name) VALUES (?)", [(n,) for n in ("Inbox", "Archive", "Sent", "Lists", "Receipts")])
    uploads_scale = dict(scale, scans=0, pdfs=0, screenshots=0)
    uploads = Uploads(rng, prose, scratch, uploads_scale)
    moment, count = EPOCH, 0

    def add(n):
        nonlocal moment, count
        con.execute("BEGIN")
        for _ in range(n):
            moment += datetime.timedelta(seconds=rng.randint(10, 1800))
            sender, recipient = person(rng)[1], person(rng)[1]
            subject = prose.sentence(rng, (2, 8))
            message_id = f"<{rng.getrandbits(64):016x}.{count}@{sender.split('@')[1]}>"
            headers = (f"Message-ID: {message_id}\nDate: {moment:%a, %d %b %Y %H:%M:%S} +0000\nFrom: {sender}\n"
                       f"To: {recipient}\nSubject: {subject}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                       f"Received: from mx{rng.randint(1, 9)}.{rng.choice(DOMAINS)} by mail.example with ESMTPS id "
                       f"{rng.getrandbits(48):012x}; {moment:%a, %d %b %Y %H:%M:%S} +0000\n")
            body = prose.passage(rng, int(rng.lognormvariate(7.6, 0.9)), prose.language(rng))
            name = attachment = None
            if rng.random() < 0.06:
                if rng.random() < 0.6:
                    name, attachment = "photo.jpg", rng.choice(uploads.photos)
                else:
                    name, attachment = "document.docx", docx(rng, prose, rng.randint(3, 20))
            con.execute("INSERT INTO messages(folder_id, received_at, sender, recipient, subject, headers, body, "
                        "attachment_name, attachment, is_read) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (rng.choice([1, 1, 1, 2, 2, 3, 4, 4, 5]), iso(moment), sender, recipient, subject, headers,
                         body, name, attachment, int(rng.random() < 0.7)))
            count += 1
        con.execute("COMMIT")

    while file_bytes(con) < target:
        add(100)
    before = count
    # The purge: everything older than 40% of the way through goes, then users delete a third of
    # the rest (whole days of a mailing list, single messages).
    cutoff = con.execute("SELECT received_at FROM messages ORDER BY id LIMIT 1 OFFSET ?", (int(count * 0.4),)).fetchone()[0]
    con.execute("BEGIN")
    con.execute("DELETE FROM messages WHERE received_at < ?", (cutoff,))
    con.execute("DELETE FROM messages WHERE folder_id = 4 AND id % 3 = 0")
    ids = [row[0] for row in con.execute("SELECT id FROM messages")]
    con.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in rng.sample(ids, len(ids) // 4)])
    con.execute("COMMIT")
    add(max(1, before // 30))  # new mail since, into some of the free pages
    left = con.execute("SELECT count(*) FROM messages").fetchone()[0]
    free = con.execute("PRAGMA freelist_count").fetchone()[0] / con.execute("PRAGMA page_count").fetchone()[0]
    return f"{count} messages written, {left} left, {100 * free:.0f}% of pages free"


BUILDERS = {"text": (build_text, True), "blobs": (build_blobs, True), "indexes": (build_indexes, True),
            "deletes": (build_deletes, False)}


def scale_for(size_mib):
    """How many of the slow-to-make files to draw, by database size."""
    if size_mib < 32:
        return {"photo_sources": 1, "photo_sizes": [(1024, 768)], "scans": 2, "pdfs": 2, "screenshots": 2}
    return {"photo_sources": 8, "photo_sizes": [(2400, 1800), (2048, 1536), (1800, 2400)], "scans": 16, "pdfs": 10,
            "screenshots": 10}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", required=True, choices=sorted(BUILDERS))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--size-mib", required=True, type=float)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scratch", type=Path, help="folder for the files made on the way (default: beside --out)")
    args = parser.parse_args()
    build, wal = BUILDERS[args.kind]
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(args.out) + suffix).unlink(missing_ok=True)
    scratch = args.scratch or args.out.parent / f"{args.out.stem}-scratch"
    rng = random.Random(f"{args.kind}-{args.seed}")
    text_limit = int(min(24 * MIB, max(MIB, args.size_mib * MIB / 8)))
    prose = Prose(random.Random(f"prose-{args.seed}"), text_limit, text_limit // 3)
    con = connect(str(args.out), wal)
    summary = build(con, int(args.size_mib * MIB), rng, prose, scratch, scale_for(args.size_mib))
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)") if wal else None
    con.close()
    for leftover in sorted(Path(scratch).glob("*")) if Path(scratch).exists() else []:
        leftover.unlink()
    if Path(scratch).exists():
        Path(scratch).rmdir()
    print(json.dumps({"kind": args.kind, "bytes": args.out.stat().st_size, "summary": summary}))


if __name__ == "__main__":
    main()
