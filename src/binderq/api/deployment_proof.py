"""Which deployment answers: `binderq up` sends a random challenge through the ports it
announces, and only its own API, holding the key made for that start, signs it."""

from __future__ import annotations

import hashlib
import hmac

from flask import Flask, Response, request

CHALLENGE_HEADER = "X-Binderq-Challenge"
PROOF_HEADER = "X-Binderq-Proof"
MAX_CHALLENGE_CHARS = 128


def deployment_proof(key: str, challenge: str) -> str:
    """The answer to challenge that only the holder of key can give."""
    return hmac.new(key.encode(), challenge.encode(), hashlib.sha256).hexdigest()


def enable_deployment_proof(app: Flask, key: str) -> None:
    """Answer every request that carries a challenge with its proof (no key: nothing)."""
    if not key:
        return

    @app.after_request
    def prove_deployment(response: Response) -> Response:
        challenge = request.headers.get(CHALLENGE_HEADER, "")
        if challenge and len(challenge) <= MAX_CHALLENGE_CHARS:
            response.headers[PROOF_HEADER] = deployment_proof(key, challenge)
        return response
