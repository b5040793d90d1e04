"""Encryption at rest of the secrets Enexa must keep readable (webhook signing secrets: HMAC
needs the secret itself): Fernet under the keys of ENEXA_SECRETS_KEY, the first encrypting and
every one decrypting, so a key can be rotated. A database dump alone reveals none of them."""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class UndecryptableSecret(Exception):
    """No configured key decrypts a stored secret (a wrong or rotated-out key, or a value that
    was never encrypted). Its message never holds the stored value."""

    def __init__(self) -> None:
        super().__init__("No key of ENEXA_SECRETS_KEY decrypts the stored secret.")


def _keys() -> MultiFernet:
    # Read at each call (cheap): a test or a re-configured process sees the keys it has now.
    return MultiFernet([Fernet(key) for key in settings.ENEXA_SECRETS_KEYS])


def encrypt(plaintext: str) -> str:
    """The Fernet token (url-safe base64 text) of `plaintext` under the first key."""
    return _keys().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """The plaintext of a token made by `encrypt` under any configured key; raises
    UndecryptableSecret otherwise."""
    try:
        return _keys().decrypt(token.encode()).decode()
    except InvalidToken:
        raise UndecryptableSecret from None  # the token itself stays out of any traceback


def reencrypt(token: str) -> str:
    """The token's plaintext encrypted anew under the first key (decrypted under any);
    raises UndecryptableSecret when no key decrypts it."""
    try:
        return _keys().rotate(token.encode()).decode()
    except InvalidToken:
        raise UndecryptableSecret from None
