"""The Gradio workbench: one module per stage of the user's flow (quick erase, model, analyze,
key steps, unlearn, compare, export), holding only layout and glue. Every method step is a call
into `kscu`; the functions that events call are plain Python that tests can call directly.
"""
