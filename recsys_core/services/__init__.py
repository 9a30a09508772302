"""App services, free of Streamlit: per-session state, background jobs, the run registry, fitting,
evaluation and cold start.

The Streamlit pages keep one :class:`Workspace` per browser session (in ``st.session_state``).
It holds the dataset, its split and graph, the trained runs and at most one running
:class:`TrainingJob`. A job trains in a daemon thread, reports progress through a thread-safe
queue, publishes each finished model through another, and stops cooperatively through an event,
so reruns and page switches (which re-execute the page scripts) neither block on nor interrupt
it. Nothing here is global: two sessions never share a mutable object (the text encoder they
may share is only read).

Tests and other front-ends build a :class:`Workspace` directly, e.g. with
:func:`prepare_workspace` on a tiny dataset and a pre-trained model added with
:meth:`RunRegistry.add`, and hand it to the app, which then skips loading the demo data and the
automatic training.
"""
