"""Look at an HTML page the way people will: headless Chromium (Debian's `chromium`, see the
Makefile's deps), a PNG screenshot, and the page's DOM after rendering.

    png = screenshot(path_to_html, tmp_path / 'page.png')
    dom = dump_dom(path_to_html)
    colored_pixels(png, (47, 109, 181))  # how many pixels of that colour are on screen

Chromium runs as root here, offline: no sandbox (root), no GPU, no network services, a new
empty profile each time.
"""

import os
import shutil
import subprocess
import tempfile

from PIL import Image

CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--hide-scrollbars', '--mute-audio')
TIMEOUT_SECONDS = 120


def chromium():
    path = shutil.which('chromium') or shutil.which('chromium-browser')
    assert path, 'chromium is not installed: make deps installs it (apt-get install chromium)'
    return path


def _run(args):
    profile = tempfile.mkdtemp(prefix='fdt-chromium-')
    try:
        return subprocess.run([chromium()] + list(CHROMIUM_FLAGS) + ['--user-data-dir=%s' % profile] + list(args),
                              capture_output=True, timeout=TIMEOUT_SECONDS, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(html_path, png_path, width=1000, height=1600):
    """A PNG of the page at ``width`` x ``height`` CSS pixels; returns its path."""
    png_path = str(png_path)
    proc = _run(['--window-size=%d,%d' % (width, height), '--screenshot=%s' % png_path,
                 'file://%s' % os.path.abspath(str(html_path))])
    assert os.path.exists(png_path) and os.path.getsize(png_path) > 0, \
        'chromium wrote no screenshot (rc %s): %s' % (proc.returncode, proc.stderr.decode(errors='replace')[-2000:])
    return png_path


def dump_dom(html_path):
    """The page's DOM as Chromium rendered it (text)."""
    proc = _run(['--dump-dom', 'file://%s' % os.path.abspath(str(html_path))])
    assert proc.returncode == 0, proc.stderr.decode(errors='replace')[-2000:]
    return proc.stdout.decode('utf-8', 'replace')


def colored_pixels(png_path, rgb, tolerance=8):
    """How many pixels of the screenshot are within ``tolerance`` of ``rgb``."""
    with Image.open(png_path) as image:
        pixels = image.convert('RGB').getdata()
        return sum(1 for p in pixels if all(abs(p[i] - rgb[i]) <= tolerance for i in range(3)))


def distinct_colors(png_path):
    with Image.open(png_path) as image:
        return len(set(image.convert('RGB').getdata()))
