"""The HTTP face of the intake: ``create_app`` builds the FastAPI app, ``server`` runs it."""
