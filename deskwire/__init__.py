"""deskwire: event-driven automation worker for ManageEngine ServiceDesk Plus.

The package is the shell, in two halves. Foundations (``settings``, ``database``,
``tables``) import nothing of ours; entry points (``cli``, ``serve``, ``embedded``)
compose everything else.
"""

__version__ = "0.1.0"
