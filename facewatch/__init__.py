"""facewatch: distributed video face recognition on Ray.

This small package holds what every layer shares: settings from the environment and the typed
errors that the API turns into `{"code", "reason", "param"}` answers.
"""

__version__ = "0.1.0"
