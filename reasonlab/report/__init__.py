"""``reasonlab report <run dirs or runs/>``: one static HTML page about a set of runs.

The page holds every stage's summary tables, its curves (inline SVG drawn from the metrics
jsonl files and the sweep's points), every PNG found in the run directories (embedded as data
URIs), a trace browser (sampled completions with their verdicts and the parsed answer
highlighted; filter buttons: correct / wrong / no answer), the search trees the sweep stored
(beam search, DVTS, MCTS, with the PRM score of every step) and, for GRPO runs, the rollouts
logged at chosen steps. Everything is inline (CSS, JS, images): the file opens offline.

Modules: ``load`` (find run directories, read their files; a missing or malformed file becomes
a one-line note), ``markup`` (escaping and small HTML pieces), ``markdown`` (the ``results.md``
tables), ``tables`` (summary tables per stage), ``charts`` (SVG line charts), ``traces``
(trace cards, RL samples), ``trees`` (search trees), ``assets`` (CSS and JS), ``build`` (the
config, the page and the stage function). Model text is always escaped: a completion cannot
inject markup or script into the page.
"""
