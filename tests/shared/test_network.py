"""Who the caller is behind trusted proxies, as both APIs work it out, under any header."""

from hypothesis import given
from hypothesis import strategies as st

from shared.network import ip_in, resolve_client_ip

PROXIES = ("10.0.0.0/8",)
address = st.ip_addresses().map(str)


@given(address, st.text(max_size=80))
def test_a_caller_not_behind_a_trusted_proxy_is_its_own_address_whatever_it_forwards(ip, header):
    if not ip_in(ip, PROXIES):
        assert resolve_client_ip(ip, header, PROXIES) == ip


@given(st.lists(address, max_size=4), address)
def test_behind_a_trusted_proxy_the_nearest_untrusted_hop_is_the_caller(hops, client):
    forwarded = ", ".join([client, *hops])
    resolved = resolve_client_ip("10.1.2.3", forwarded, PROXIES)
    untrusted = [h for h in [client, *hops] if not ip_in(h, PROXIES)]
    assert resolved == (untrusted[-1] if untrusted else "10.1.2.3")


@given(st.text(max_size=80))
def test_garbage_forwarded_through_a_trusted_proxy_falls_back_to_the_proxy(header):
    resolved = resolve_client_ip("10.1.2.3", header, PROXIES)
    assert resolved is not None


def test_without_trusted_proxies_the_header_is_never_believed():
    assert resolve_client_ip("10.1.2.3", "203.0.113.9", ()) == "10.1.2.3"
