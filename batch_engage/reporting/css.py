"""The campaign report's stylesheet, inlined into the page so it opens the same with no network."""

from __future__ import annotations

__all__ = ["CSS"]

CSS = """
:root{--fg:#1d2330;--muted:#5f6b7a;--line:#e3e7ee;--bg:#f6f7fb;--card:#fff;--accent:#3f6fb5;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);
background:var(--bg);line-height:1.45}
body{margin:0}
main{max-width:1100px;margin:0 auto;padding:28px 20px 40px}
header,section,footer{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:20px 24px;
margin-bottom:18px}
h1{font-size:1.9rem;margin:0 0 12px;letter-spacing:-.01em;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:0 0 14px}
h3{font-size:.95rem;margin:18px 0 6px;color:var(--muted);font-weight:600}
.sub{font-weight:400;color:var(--muted);font-size:.9rem;margin-left:.4em}
.kicker{margin:0 0 2px;text-transform:uppercase;letter-spacing:.08em;font-size:.72rem;color:var(--muted)}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em;overflow-wrap:anywhere}
.head-grid{display:flex;flex-wrap:wrap;gap:16px 32px;align-items:flex-start;justify-content:space-between}
.facts{display:flex;flex-wrap:wrap;gap:10px 30px;margin:0;flex:1 1 520px}
.facts dd{white-space:nowrap}
.facts dt{font-size:.75rem;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
.facts dd{margin:0;font-weight:500}
.rates{display:flex;gap:10px}
.rate{border:1px solid var(--line);border-radius:10px;padding:8px 14px;min-width:92px;text-align:center}
.rate .num{font-size:1.5rem;font-weight:650;font-variant-numeric:tabular-nums}
.rate .unit{color:var(--muted);font-size:.85rem;margin-left:2px}
.rate .lbl{display:block;font-size:.72rem;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
#rate-achieved{border-color:var(--accent);background:#eef3fb}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(104px,1fr));gap:10px;margin-bottom:12px}
.tile{border:1px solid var(--line);border-top:4px solid var(--c);border-radius:10px;padding:10px 12px}
.tile .count{display:block;font-size:1.35rem;font-weight:650;font-variant-numeric:tabular-nums;color:var(--c)}
.tile .name{display:block;font-size:.85rem;font-weight:500}
.tile .share{display:block;font-size:.8rem;color:var(--muted);font-variant-numeric:tabular-nums}
.tile.zero{opacity:.5}
.tile.zero .count{color:var(--muted)}
.sharebar{display:block;width:100%;height:14px;border-radius:7px;background:var(--line)}
.chart{display:block;width:100%;height:auto;min-width:560px}
.scroll{overflow-x:auto}
.chart text{font-size:12px;fill:var(--muted);font-variant-numeric:tabular-nums}
.chart .ytick{text-anchor:end}
.chart .xtick{text-anchor:start}
.chart .grid{stroke:var(--line);stroke-width:1}
.chart .axis{stroke:#9aa3b0;stroke-width:1}
.chart .target{stroke:#9aa3b0;stroke-width:1;stroke-dasharray:5 4}
.hbars{display:flex;gap:12px;align-items:flex-start;font-size:.9rem;margin-bottom:6px}
.hbars svg{flex:1 1 0;min-width:60px;display:block}
.hbars .track{fill:#eef1f6}
.hb-l{flex:0 1 auto;max-width:42%;min-width:0;text-align:right}
.hb-l div,.hb-n div{height:26px;line-height:26px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.hb-n{flex:0 0 auto;min-width:4.5em;font-weight:600;font-variant-numeric:tabular-nums}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:6px 18px;padding:0;margin:0 0 6px;font-size:.85rem}
.legend li::before{content:"";display:inline-block;width:11px;height:11px;border-radius:2px;background:var(--c);
margin-right:6px;vertical-align:-1px}
.legend li.line::before{height:3px;border-radius:0;vertical-align:3px}
.legend li.dash::before{height:0;border-top:2px dashed #9aa3b0;background:none;vertical-align:3px}
.note{color:var(--muted);margin:0 0 8px;font-size:.9rem}
#no-run-events{background:#fff8e1;border:1px solid #ffe082;color:#6d4c00;border-radius:8px;padding:10px 14px}
table.failures{width:100%;border-collapse:collapse;font-size:.92rem}
.failures th{text-align:left;font-size:.75rem;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);
border-bottom:1px solid var(--line);padding:6px 8px}
.failures td{border-bottom:1px solid var(--line);padding:8px;vertical-align:top}
.failures .code{font-weight:650;color:#c62828;font-variant-numeric:tabular-nums;white-space:nowrap}
.failures .n{text-align:right;font-variant-numeric:tabular-nums;font-weight:600}
.failures .more{font-size:.8rem;overflow-wrap:anywhere}
.failures .more a{color:var(--accent)}
.failures .ex code{white-space:nowrap}
.rehearsal{margin:0 0 10px;padding:8px 12px;border-radius:6px;background:#fff3cd;color:#5c4400;
border:1px solid #f0c36d}
.examples{font-size:.85rem;color:var(--muted)}
table.variants{width:100%;border-collapse:collapse;font-size:.92rem}
.variants th{text-align:left;font-weight:600;border-bottom:1px solid var(--line);padding:6px 8px}
.variants td{border-bottom:1px solid var(--line);padding:8px;text-align:right;font-variant-numeric:tabular-nums}
.variants th.n{text-align:right}
.variants .ci{font-size:.8rem;color:var(--muted)}
.verdicts{margin:10px 0;padding-left:20px}
.verdict{margin:4px 0}
footer{font-size:.85rem;color:var(--muted)}
footer p{margin:0}
@media (max-width:640px){main{padding:12px 8px}header,section,footer{padding:14px}.rates{flex-wrap:wrap}
.failures .ex{display:none}}
""".strip()
"""Inline CSS for the report page: system fonts only, no URLs; narrow screens drop the examples column."""
