"""Hub datasets, from reference to rows: `fetch` resolves an `hf:` reference to a commit
and downloads its split's files into the Hugging Face cache; `splits` opens them as
memory-mapped Arrow through `datasets`; `text` and `rows` read them for each kind of
head with the same label rules and messages as local files; `preview` shows one split; `search` and `layout` find datasets on the hub and read how
their files form subsets and splits.
"""
