"""Custom actions of the check-in assistant (rasa-sdk, run in the app's own environment).

``python -m rasa_sdk --actions dialogs.actions`` imports this package and its submodules.
``core.questions`` holds the slot → catalogue item table as plain data (no rasa-sdk import), so
``core.grading`` can read it without Rasa.
"""
