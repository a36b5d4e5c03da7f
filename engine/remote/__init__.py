"""Reaching other machines: one SSH connection per remote to its `hubtune serve --stdio`
(`session`). Plain Python and the system ssh client."""
