"""The SDP REST API v3 client (ServiceDesk Plus Cloud in every data centre, and on-premises).

It takes an authenticated ``httpx.Client`` and the API base URL; authentication, token
refresh and TLS policy belong to ``connections``. Every call it makes is in one table,
:data:`sdp.operations.OPERATIONS`.
"""

from sdp.client import MAX_ROWS, SdpClient, response_failure
from sdp.errors import SdpError, SdpTransientError
from sdp.fields import FieldValueError, request_fields
from sdp.operations import OPERATIONS, Operation

__all__ = [
    "MAX_ROWS",
    "OPERATIONS",
    "FieldValueError",
    "Operation",
    "SdpClient",
    "SdpError",
    "SdpTransientError",
    "request_fields",
    "response_failure",
]
