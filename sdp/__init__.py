"""The SDP REST API v3 client (ServiceDesk Plus Cloud in every data centre, and on-premises).

It takes an authenticated ``httpx.Client`` and the API base URL; authentication, token
refresh and TLS policy belong to ``connections``.
"""

from sdp.client import SdpClient
from sdp.errors import SdpError, SdpTransientError

__all__ = ["SdpClient", "SdpError", "SdpTransientError"]
