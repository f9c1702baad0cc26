"""The headless browser the human-eval and report tests drive: Debian's chromium through Playwright, offline."""


def test_browser_renders_and_handles_keys(page):
    page.set_content("<p id=out>none</p><script>addEventListener('keydown', e => "
                     "document.getElementById('out').textContent = e.key)</script>")
    page.keyboard.press("3")
    assert page.text_content("#out") == "3"
    png = page.screenshot()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
