"""The engine: the RLM loop, prompts, parsing, usage and the sub-call router.

It never imports typer, rich or a vendor SDK (a test checks this).
"""
