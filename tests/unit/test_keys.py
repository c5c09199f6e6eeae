"""Wallet secrets from what users paste: formats, derivation vectors, errors that never echo secrets."""

from __future__ import annotations

import json

import base58
import pytest
from mnemonic import Mnemonic
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from bot.keys import (
    KeyFormatError,
    export_secret,
    generate_wallet,
    keypair_from_phrase,
    looks_like_secret,
    parse_wallet_secret,
    registration_proof,
    secret_spans,
    short_address,
    slip10_derive,
    slip10_master,
)

ABANDON = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"

# SLIP-0010 published test vectors for ed25519: (path, chain code, private key, public key without 00 prefix).
SLIP10_VECTOR_1 = (
    "000102030405060708090a0b0c0d0e0f",
    [
        (
            (),
            "90046a93de5380a72b5e45010748567d5ea02bbf6522f979e05c0d8d8ca9fffb",
            "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7",
            "a4b2856bfec510abab89753fac1ac0e1112364e7d250545963f135f2a33188ed",
        ),
        (
            (0,),
            "8b59aa11380b624e81507a27fedda59fea6d0b779a778918a2fd3590e16e9c69",
            "68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3",
            "8c8a13df77a28f3445213a0f432fde644acaa215fc72dcdf300d5efaa85d350c",
        ),
        (
            (0, 1),
            "a320425f77d1b5c2505a6b1b27382b37368ee640e3557c315416801243552f14",
            "b1d0bad404bf35da785a64ca1ac54b2617211d2777696fbffaf208f746ae84f2",
            "1932a5270f335bed617d5b935c80aedb1a35bd9fc1e31acafd5372c30f5c1187",
        ),
        (
            (0, 1, 2),
            "2e69929e00b5ab250f49c3fb1c12f252de4fed2c1db88387094a0f8c4c9ccd6c",
            "92a5b23c0b8a99e37d07df3fb9966917f5d06e02ddbd909c7e184371463e9fc9",
            "ae98736566d30ed0e9d2f4486a64bc95740d89c7db33f52121f8ea8f76ff0fc1",
        ),
        (
            (0, 1, 2, 2),
            "8f6d87f93d750e0efccda017d662a1b31a266e4a6f5993b15f5c1f07f74dd5cc",
            "30d1dc7e5fc04c31219ab25a27ae00b50f6fd66622f6e9c913253d6511d1e662",
            "8abae2d66361c879b900d204ad2cc4984fa2aa344dd7ddc46007329ac76c429c",
        ),
        (
            (0, 1, 2, 2, 1000000000),
            "68789923a0cac2cd5a29172a475fe9e0fb14cd6adb5ad98a3fa70333e7afa230",
            "8f94d394a8e8fd6b1bc2f3f49f5c47e385281d5c17e65324b0f62483e37e8793",
            "3c24da049451555d51a7014a37337aa4e12d41e485abccfa46b47dfb2af54b7a",
        ),
    ],
)
SLIP10_VECTOR_2 = (
    "fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542",
    [
        (
            (),
            "ef70a74db9c3a5af931b5fe73ed8e1a53464133654fd55e7a66f8570b8e33c3b",
            "171cb88b1b3c1db25add599712e36245d75bc65a1a5c9e18d76f9f2b1eab4012",
            "8fe9693f8fa62a4305a140b9764c5ee01e455963744fe18204b4fb948249308a",
        ),
        (
            (0,),
            "0b78a3226f915c082bf118f83618a618ab6dec793752624cbeb622acb562862d",
            "1559eb2bbec5790b0c65d8693e4d0875b1747f4970ae8b650486ed7470845635",
            "86fab68dcb57aa196c77c5f264f215a112c22a912c10d123b0d03c3c28ef1037",
        ),
        (
            (0, 2147483647),
            "138f0b2551bcafeca6ff2aa88ba8ed0ed8de070841f0c4ef0165df8181eaad7f",
            "ea4f5bfe8694d8bb74b7b59404632fd5968b774ed545e810de9c32a4fb4192f4",
            "5ba3b9ac6e90e83effcd25ac4e58a1365a9e35a3d3ae5eb07b9e4d90bcf7506d",
        ),
        (
            (0, 2147483647, 1),
            "73bd9fff1cfbde33a1b846c27085f711c0fe2d66fd32e139d3ebc28e5a4a6b90",
            "3757c7577170179c7868353ada796c839135b3d30554bbb74a4b1e4a5a58505c",
            "2e66aa57069c86cc18249aecf5cb5a9cebbfd6fadeab056254763874a9352b45",
        ),
        (
            (0, 2147483647, 1, 2147483646),
            "0902fe8a29f9140480a00ef244bd183e8a13288e4412d8389d140aac1794825a",
            "5837736c89570de861ebc173b1086da4f505d4adb387c6a1b1342d5e4ac9ec72",
            "e33c0f7d81d843c572275f287498e8d408654fdf0d1e065b84e2e6f157aab09b",
        ),
        (
            (0, 2147483647, 1, 2147483646, 2),
            "5d70af781f3a37b829f0d060924d5e960bdc02e85423494afc0b1a41bbe196d4",
            "551d333177df541ad876a60ea71f00447931c0a9da16f227c11ea080d7391b8d",
            "47150c75db263559a70d5778bf36abbab30fb061ad69f69ece61a72b0cfa4fc0",
        ),
    ],
)


@pytest.mark.parametrize("vector", [SLIP10_VECTOR_1, SLIP10_VECTOR_2], ids=["vector1", "vector2"])
def test_slip10_matches_published_ed25519_vectors(vector: tuple) -> None:
    seed_hex, cases = vector
    seed = bytes.fromhex(seed_hex)
    for path, chain_hex, private_hex, public_hex in cases:
        private, chain = slip10_derive(seed, path) if path else slip10_master(seed)
        assert chain.hex() == chain_hex, path
        assert private.hex() == private_hex, path
        assert bytes(Keypair.from_seed(private).pubkey()).hex() == public_hex, path


def test_known_phrases_give_known_solana_addresses() -> None:
    # The Phantom path on top of the vector-checked SLIP-0010 code. Cross-checks from independent
    # implementations: Trezor's "all x12" fixture at m/44'/501'/0'/0', OKX's SDK vector for "famous grow ...".
    assert (
        str(parse_wallet_secret(" ".join(["all"] * 12)).pubkey())
        == "14CCvQzQzHCVgZM3j9soPnXuJXh1RmCfwLVUcdfbZVBS"
    )
    famous = "famous grow judge chair narrow auction order repeat hungry endless market taxi"
    assert export_secret(parse_wallet_secret(famous)) == (
        "42gxtUbib5ETVJAX8aMYrLG3XahGnMXvAHXa4TkhWZJ6ev64bzPXsRQzYEmQvriQwHeWjEu8JqwpyRYCR7hYUnAG"
    )
    # BIP39 seed of the abandon phrase is a published vector; its address follows from the code above.
    assert Mnemonic.to_seed(ABANDON, "").hex().startswith("5eb00bbddcf069084889a8ab9155568165f5c453")
    assert str(parse_wallet_secret(ABANDON).pubkey()) == "HAgk14JpMQLgt6rVgv7cBQFJWFto5Dqxi472uT3DKpqk"


def test_phrase_tolerates_case_numbering_and_line_breaks() -> None:
    expected = parse_wallet_secret(ABANDON).pubkey()
    words = ABANDON.split()
    numbered = "\n".join(f"{i}. {w}" for i, w in enumerate(words, start=1))
    assert parse_wallet_secret(numbered).pubkey() == expected
    assert parse_wallet_secret("  " + ABANDON.upper().replace(" ", ",  ") + "\n").pubkey() == expected
    assert keypair_from_phrase(ABANDON, account=1).pubkey() != expected


def test_24_word_phrase() -> None:
    phrase = Mnemonic("english").generate(strength=256)
    assert len(phrase.split()) == 24
    keypair = parse_wallet_secret(phrase)
    seed = Mnemonic.to_seed(phrase, "")
    assert keypair == Keypair.from_seed(slip10_derive(seed, (44, 501, 0, 0))[0])


def test_base58_and_json_forms_round_trip() -> None:
    keypair, secret = generate_wallet()
    assert secret == export_secret(keypair)
    assert parse_wallet_secret(secret) == keypair
    assert parse_wallet_secret(f"  `{secret}`\n") == keypair
    # A phone may break a long key over lines.
    assert parse_wallet_secret(secret[:40] + "\n" + secret[40:]) == keypair
    assert parse_wallet_secret(json.dumps(list(bytes(keypair)))) == keypair
    seed = bytes(keypair)[:32]
    assert parse_wallet_secret(json.dumps(list(seed))) == keypair


def _error(text: str) -> str:
    with pytest.raises(KeyFormatError) as info:
        parse_wallet_secret(text)
    message = str(info.value)
    if text.strip():
        assert text.strip() not in message
    return message


def test_wrong_word_is_named_by_position_only() -> None:
    words = ABANDON.split()
    words[6] = "abandn"
    message = _error(" ".join(words))
    assert "word 7" in message
    assert "abandn" not in message and "abandon" not in message


def test_bad_checksum_and_word_count() -> None:
    swapped = "about " + " ".join(["abandon"] * 11)
    assert "checksum" in _error(swapped)
    assert "12 or 24 words (got 11)" in _error(" ".join(["abandon"] * 11))


def test_json_errors_say_what_is_expected() -> None:
    keypair, _ = generate_wallet()
    numbers = list(bytes(keypair))
    assert "64 numbers from 0 to 255 (got 63)" in _error(json.dumps(numbers[:63]))
    assert "item 5" in _error(json.dumps(numbers[:4] + [256] + numbers[5:]))
    assert "not valid JSON" in _error(json.dumps(numbers)[:-1])


def test_address_pasted_instead_of_secret() -> None:
    keypair, _ = generate_wallet()
    message = _error(str(keypair.pubkey()))
    assert "ADDRESS" in message
    # An off-curve account (a PDA) is not a secret key either.
    pda, _bump = Pubkey.find_program_address(
        [b"seed"], Pubkey.from_string("11111111111111111111111111111111")
    )
    assert "address" in _error(str(pda))


def test_mismatched_halves_and_garbage() -> None:
    first, _ = generate_wallet()
    second, _ = generate_wallet()
    spliced = base58.b58encode(bytes(first)[:32] + bytes(second.pubkey())).decode()
    assert "public key of the first half" in _error(spliced)
    assert "not base58" in _error("0OIl" * 22)
    assert "64 bytes" in _error(base58.b58encode(bytes(40)).decode() + "x")
    assert "empty" in _error("   ")


def test_looks_like_secret_spots_every_form_and_spares_public_data() -> None:
    keypair, secret = generate_wallet()
    assert looks_like_secret(f"here is my key {secret} thanks")
    assert looks_like_secret("key file: " + json.dumps(list(bytes(keypair))))
    assert looks_like_secret("my words:\n" + ABANDON)
    typo = ABANDON.replace("about", "abuot")
    assert looks_like_secret(typo)
    # Public things people share in groups are not secrets.
    signature = keypair.sign_message(b"a transaction")
    assert len(base58.b58decode(str(signature))) == 64
    assert not looks_like_secret(f"sold! tx {signature} on {keypair.pubkey()}")
    assert not looks_like_secret("abandon abandon abandon what a day")
    assert not looks_like_secret("")


def test_secret_spans_cover_only_the_secret() -> None:
    _keypair, secret = generate_wallet()
    text = f"before {secret} after, then the words were: {ABANDON}. ok"
    parts = sorted(text[a:b] for a, b in secret_spans(text))
    assert parts == sorted([secret, ABANDON])


def test_registration_proof_verifies() -> None:
    keypair, _ = generate_wallet()
    proof = registration_proof(keypair, 1_700_000_000)
    pubkey = str(keypair.pubkey())
    assert proof["wallet_pubkey"] == pubkey
    assert proof["message"] == f"lasersell-register:{pubkey}:1700000000"
    signature = Signature.from_string(proof["signature"])
    assert signature.verify(keypair.pubkey(), proof["message"].encode())
    assert not signature.verify(keypair.pubkey(), b"lasersell-register:other")


def test_short_address() -> None:
    assert short_address("7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU") == "7xKX…AsU"
    assert short_address("abc") == "abc"
