"""Realistic pages served by the local page server in the scraping tests and the benchmark."""

from __future__ import annotations

from typing import Any

NAV_TEXT = "Home Products Pricing Blog Careers"
AD_TEXT = "BUY CHEAP WIDGETS NOW"
COOKIE_TEXT = "We use cookies to improve your experience"
FOOTER_TEXT = "Copyright 2024 Example Media Ltd"
SIDEBAR_TEXT = "Most popular this week"
RELATED_TEXT = "You might also like"

ARTICLE_FACTS: dict[str, Any] = {
    "title": "How Tidal Power Plants Work",
    "author": "Ada Lovelace",
    "heading": "Barrages and lagoons",
    "list_items": ["Predictable output", "Long plant lifetime", "Low carbon emissions"],
    "table_row": ["La Rance", "France", "240"],
    "link_text": "the 1966 La Rance report",
    "link_href": "/reports/la-rance-1966",
}


def article_page() -> str:
    f = ARTICLE_FACTS
    items = "".join(f"<li>{i}</li>" for i in f["list_items"])
    return f"""<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<title>{f["title"]} | Example News</title>
<meta name="description" content="A plain guide to tidal barrages and lagoons.">
<meta property="og:title" content="{f["title"]}">
<meta property="og:type" content="article">
<meta property="og:image" content="https://cdn.example.com/tidal.jpg">
<link rel="canonical" href="/science/tidal-power">
<script async src="https://ads.example.net/loader.js"></script>
<script>window.dataLayer=[];function gtag(){{dataLayer.push(arguments)}}</script>
<style>.ad-slot{{width:300px}}</style>
</head>
<body>
<div id="cookie-banner" class="cookie-consent">{COOKIE_TEXT}. <button>Accept all</button></div>
<header class="site-header">
  <a href="/"><img src="/logo.png" alt="Example News"></a>
  <nav class="main-nav"><ul>
    {"".join(f'<li><a href="/{w.lower()}">{w}</a></li>' for w in NAV_TEXT.split())}
  </ul></nav>
</header>
<div class="ad-slot ad-leaderboard">{AD_TEXT}</div>
<div class="layout">
<main>
<article class="post">
  <header class="post-header">
    <h1>{f["title"]}</h1>
    <p class="byline">By <a href="/authors/ada">{f["author"]}</a>, 3 March 2024</p>
  </header>
  <p>Tidal power turns the rise and fall of the sea into electricity. Unlike wind or sun,
  the tides can be predicted years ahead, which makes them attractive to grid operators who
  must balance supply and demand every second of the day.</p>
  <p>The first large plant opened in 1966; see <a href="{f["link_href"]}">{f["link_text"]}</a>
  for the engineering details of the sluice gates and bulb turbines it used.</p>
  <div class="ad-slot ad-inline"><a href="https://ads.example.net/click">{AD_TEXT}</a></div>
  <h2>{f["heading"]}</h2>
  <p>A barrage is a dam across an estuary. Water flows through turbines as the tide comes in
  and again as it goes out. A lagoon encloses part of the sea with a wall instead, which
  reduces the impact on the estuary's wildlife and shipping.</p>
  <h3>Advantages</h3>
  <ul>{items}</ul>
  <h3>Steps to build one</h3>
  <ol><li>Survey the tidal range</li><li>Model the sediment flows</li>
  <li>Build the wall and turbine housings</li></ol>
  <h2>Plants in operation</h2>
  <table>
    <thead><tr><th>Plant</th><th>Country</th><th>Capacity (MW)</th></tr></thead>
    <tbody>
      <tr><td>{f["table_row"][0]}</td><td>{f["table_row"][1]}</td><td>{f["table_row"][2]}</td></tr>
      <tr><td>Sihwa Lake</td><td>South Korea</td><td>254</td></tr>
    </tbody>
  </table>
  <blockquote><p>The tide is the most reliable renewable we have.</p></blockquote>
  <pre><code class="language-python">capacity_mw = 240
energy = capacity_mw * hours</code></pre>
  <p>Costs remain high: a barrage needs <strong>large civil works</strong> and the output
  comes in <em>pulses</em> four times a day.</p>
</article>
<section class="related-articles"><h4>{RELATED_TEXT}</h4>
  <ul><li><a href="/a">Wave energy explained</a></li><li><a href="/b">Offshore wind</a></li></ul>
</section>
</main>
<aside class="sidebar"><h3>{SIDEBAR_TEXT}</h3><ol><li><a href="/p1">Story one</a></li>
<li><a href="/p2">Story two</a></li></ol></aside>
</div>
<footer class="site-footer"><p>{FOOTER_TEXT}</p><a href="/privacy">Privacy</a>
<a href="/terms">Terms</a></footer>
<script>(function(){{var s=document.createElement('script');s.src='/t.js';}})();</script>
</body>
</html>"""


def long_page(paragraphs: int = 120) -> str:
    """A long page whose facts are spread over many paragraphs (needs chunking)."""
    parts = []
    for i in range(paragraphs):
        parts.append(
            f"<h2>Section {i}</h2><p>Fact number {i}: the widget model W{i:03d} weighs "
            f"{i + 10} kilograms and was designed in workshop {i % 7}. "
            + "It is described at length here so that the page needs several chunks. " * 6
            + "</p>"
        )
    return (
        "<!DOCTYPE html><html lang='en'><head><title>Widget catalogue</title></head><body>"
        "<nav><a href='/'>Home</a></nav><article><h1>Widget catalogue</h1>"
        + "".join(parts)
        + "</article><footer>Footer text</footer></body></html>"
    )


CLOUDFLARE_CHALLENGE = """<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>
<meta http-equiv="refresh" content="390"><script>(function(){window._cf_chl_opt={cvId: '3',
cZone: 'example.com'};})();</script></head><body><div class="main-wrapper"><div class="main-content">
<h1 class="zone-name-title h1">example.com</h1><h2>Checking if the site connection is secure</h2>
<div id="challenge-body-text">example.com needs to review the security of your connection before
proceeding.</div><noscript>Enable JavaScript and cookies to continue</noscript></div></div>
<script src="/cdn-cgi/challenge-platform/h/b/orchestrate/chl_page/v1"></script></body></html>"""

CLOUDFLARE_BLOCK = """<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head>
<body><div id="cf-wrapper"><h1>Sorry, you have been blocked</h1><p>You are unable to access
example.com</p></div></body></html>"""

CAPTCHA_PAGE = """<html><head><title>Verification</title></head><body><h1>Quick check</h1>
<p>Please complete the security check to continue.</p><form><div class="g-recaptcha"
data-sitekey="abc"></div></form><script src="https://www.google.com/recaptcha/api.js"></script>
</body></html>"""

JS_SHELL = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Dashboard</title>
<link rel="stylesheet" href="/static/main.css"></head><body><div id="root"></div>
<script src="/static/js/vendor.js"></script><script src="/static/js/main.js"></script></body></html>"""

ENABLE_JS_SHELL = """<!doctype html><html><head><title>Shop</title></head><body>
<noscript>You need to enable JavaScript to run this app.</noscript><div id="app"></div>
<script src="/app.js"></script></body></html>"""

SOFT_404 = """<!doctype html><html><head><title>Page not found | Example Shop</title></head><body>
<nav><a href="/">Home</a><a href="/shop">Shop</a></nav><main><h1>Oops! That page can't be found.</h1>
<p>It looks like nothing was found at this location. Maybe try a search?</p></main>
<footer>Example Shop</footer></body></html>"""

ARTICLE_WITH_COMMENTS_NOSCRIPT = article_page().replace(
    "</article>",
    "<noscript>Please enable JavaScript to view the comments powered by Disqus.</noscript></article>",
)

LATIN1_PAGE = (
    "<html><head><meta http-equiv='Content-Type' content='text/html; charset=iso-8859-1'>"
    "<title>Caf\xe9 cr\xe8me</title></head><body><article><h1>Caf\xe9 cr\xe8me</h1>"
    "<p>Le caf\xe9 cr\xe8me est servi tr\xe8s chaud, avec une mousse \xe9paisse et "
    "onctueuse, dans une grande tasse.</p></article></body></html>"
).encode("latin-1")

XHTML_PAGE = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN"
 "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="de" lang="de"><head><title>XHTML Seite</title>
</head><body><div id="content"><h1>Grüße</h1><p>Dies ist eine XHTML-Seite mit genug Text, damit
sie als Inhalt zählt.</p></div></body></html>"""

PLAIN_TEXT = "Release notes\n\nVersion 2.0 adds tidal forecasts and fixes the export bug.\n"

JSON_BODY = b'{"name": "widget", "tags": ["a", "b"], "price": 9.5}'
