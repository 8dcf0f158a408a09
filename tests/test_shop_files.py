"""A shop's own data: the recommended sets (RECOMMENDED_SETS_FILE) and the bot texts
(TEXTS_FILE), TOML files read and checked at start, used through HTTP."""

from __future__ import annotations

import fakeredis
import pytest

from gurugrow import ConfigError, create_app, texts
from gurugrow.config import config_error_lines
from tests.conftest import TEST_ENV
from tests.helpers import BODY_KINDS, TG, post

TG_FIELD = "bot_telegram_account_id"
RECIPIENT = {"firstName": "Анна", "lastName": "Смирнова", "phone": "79991234567"}

TWO_SETS = """\
# two sets of a shop
[sets.starter]
bundle = "KIT-START"
title = "Стартовый набор"
components = ["Сыворотка, 30 мл", "Шампунь"]

[sets.Pro-Kit]
bundle = "KIT-PRO"
title = "Профессиональный набор"
components = ["Миноксидил 5%"]
site = "test-site"
status = "new"
"""


@pytest.fixture(autouse=True)
def default_texts():
    """Each app applies its own texts; put the originals back after a test's app."""
    yield
    texts.apply_overrides({})


def app_with(tmp_path, **files: str):
    env = dict(TEST_ENV)
    for setting, content in files.items():
        path = tmp_path / f"{setting.lower()}.toml"
        path.write_text(content, encoding="utf-8")
        env[setting] = str(path)
    return create_app(env, redis_client=fakeredis.FakeRedis())


def refusal(tmp_path, **files: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        app_with(tmp_path, **files)
    return config_error_lines(raised.value, env_file_exists=True)


def call(client, action, kind="form", **fields):
    return post(client, f"/orders/recommended/{action}", {**TG, **fields}, kind)


@pytest.fixture
def shop(upstreams):
    upstreams.add_bundle(41, "KIT-START")
    upstreams.state.products[-1]["offers"][0]["prices"] = [
        {"priceType": "base", "price": 2490, "ordering": 1, "currency": "RUB"}]
    upstreams.add_bundle(42, "KIT-PRO")  # no price in the catalog
    return upstreams


# -- sets ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_sets_file_with_two_sets_works_end_to_end(tmp_path, shop, kind):
    client = app_with(tmp_path, RECOMMENDED_SETS_FILE=TWO_SETS).test_client()
    shop.add_customer(626518, "+79990001122", **{TG_FIELD: "123456789"})
    # preview: the first set priced from the catalog, the second without a price
    first = call(client, "preview", kind, offerCode="starter")
    assert (first["status"], first["title"]) == ("ok", "Стартовый набор")
    assert first["text"] == ("Стартовый набор\n\nВ набор входит:\n• Сыворотка, 30 мл\n"
                             "• Шампунь\n\nСтоимость: 2\u00a0490\u00a0₽\n\nОформляем заказ?")
    second = call(client, "preview", kind, offerCode="pro-kit")
    assert second["offerCode"] == "pro-kit" and "Стоимость" not in second["text"]
    # a demo set is not offered by a shop that has its own file
    assert call(client, "preview", kind, offerCode="male_hairloss_basic")["errorCode"] == (
        "unknown_offer")
    # create: the first set to RECOMMENDED_ORDER_SITE/_STATUS, the second to its own
    assert call(client, "create", kind, offerCode="starter")["status"] == "created"
    assert call(client, "create", kind, offerCode="PRO-KIT")["status"] == "created"
    [one, two] = shop.created
    assert (one["site"], one["status"], one["items"][0]["offer"]) == (
        "1minoxidil-ru", "ruchnaia-obrabotka", {"id": 410})
    assert (two["site"], two["status"], two["items"][0]["offer"]) == (
        "test-site", "new", {"id": 420})


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_sets_file_set_is_ordered_by_code(tmp_path, shop, kind):
    client = app_with(tmp_path, RECOMMENDED_SETS_FILE=TWO_SETS).test_client()
    answer = call(client, "start", kind, offerCode="pro-kit", **RECIPIENT)
    assert answer["status"] == "sent", answer
    done = call(client, "check", kind, sessionId=answer["sessionId"],
                code=shop.codes_sent()[0])
    assert (done["status"], done["offerCode"]) == ("created", "pro-kit"), done
    [order] = shop.created
    assert (order["site"], order["status"]) == ("test-site", "new")
    [customer] = [c for c in shop.customers.values() if c["customFields"].get(TG_FIELD)]
    assert customer["firstName"] == "Анна"


@pytest.mark.parametrize(("content", "says"), [
    ("[sets.a]\nbundle = \"X\"\ntitle = \"T\"\ncomponents = [\"c\"]\n\n[sets.b]\ntitle = \"T\"\n"
     "components = [\"c\"]\n", "set b (line 6): bundle must be a non-empty string"),
    ("[sets.a]\nbundle = \"X\"\ntitle = \"T\"\ncomponents = []\n",
     "set a (line 1): components must be a list of non-empty strings"),
    ("[sets.a]\nbundle = \"X\"\ntitle = \"T\"\ncomponents = [\"c\"]\nprice = 10\n",
     "set a (line 1): unknown key price"),
    ("[sets.a]\nbundle = \"X\"\ntitle = \"T\"\ncomponents = [\"c\"\n",
     "is not valid TOML"),
    ("[sets.a]\nbundle = \"X\"\ntitle = \"T\"\ncomponents = [\"c\"]\n[sets.A]\nbundle = \"Y\"\n"
     "title = \"T\"\ncomponents = [\"c\"]\n", "set A (line 5) repeats another set's offerCode"),
    ("title = \"T\"\n", "unknown top-level key title (line 1)"),
], ids=["no-bundle", "no-components", "unknown-key", "not-toml", "same-code", "no-table"])
def test_a_bad_sets_file_is_refused_at_start_naming_the_line(tmp_path, content, says):
    lines = refusal(tmp_path, RECOMMENDED_SETS_FILE=content)
    assert len(lines) == 1, lines
    assert lines[0].startswith("gurugrow: configuration error: RECOMMENDED_SETS_FILE: ")
    assert says in lines[0], lines


def test_a_missing_sets_file_is_refused_with_the_other_problems(tmp_path):
    env = {**TEST_ENV, "RECOMMENDED_SETS_FILE": str(tmp_path / "nope.toml"),
           "OTP_TTL_SECONDS": "soon"}
    with pytest.raises(ConfigError) as raised:
        create_app(env, redis_client=fakeredis.FakeRedis())
    assert [p.env for p in raised.value.problems] == ["OTP_TTL_SECONDS",
                                                      "RECOMMENDED_SETS_FILE"]
    assert "cannot read" in raised.value.problems[1].text


# -- texts --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_texts_file_changes_an_answers_text(tmp_path, upstreams, kind):
    client = app_with(tmp_path, TEXTS_FILE=(
        'RECOMMENDED_PREVIEW = "Твой набор: {title}\\n{components}\\nБерёшь?"\n'
        '[ERROR_MESSAGES]\nunknown_offer = "Нет такого набора, выбери другой."\n'
    )).test_client()
    upstreams.add_customer(626518, "+79990001122", **{TG_FIELD: "123456789"})
    preview = call(client, "preview", kind, offerCode="male_hairloss_basic")
    assert preview["text"].startswith("Твой набор: Базовый набор против выпадения волос для "
                                      "мужчин\n• Миноксидил 5%"), preview
    unknown = call(client, "preview", kind, offerCode="nothing")
    assert unknown["message"] == "Нет такого набора, выбери другой."
    # Texts not in the file keep the contract's wording.
    assert texts.ERROR_MESSAGES["expired"] == "Срок действия кода истёк. Запросите новый код."


def test_an_app_without_a_texts_file_has_the_contract_texts(tmp_path, upstreams):
    app_with(tmp_path, TEXTS_FILE='ORDERS_EMPTY = "Пусто"\n')
    assert texts.ORDERS_EMPTY == "Пусто"
    create_app(TEST_ENV, redis_client=fakeredis.FakeRedis())
    assert texts.ORDERS_EMPTY == "У вас пока нет заказов."


@pytest.mark.parametrize(("content", "says"), [
    ('SMS_CODE = "Код: {code}, {name}"\n', "SMS_CODE uses {name}, which the original lacks"),
    ('NO_SUCH_TEXT = "x"\n', "unknown text NO_SUCH_TEXT"),
    ('[ERROR_MESSAGES]\nno_such_code = "x"\n', "unknown text ERROR_MESSAGES.no_such_code"),
    ('ORDER_ITEM = "• {name x{quantity}"\n', "ORDER_ITEM has an unbalanced { or }"),
    ('ERROR_MESSAGES = "x"\n', "ERROR_MESSAGES is a table"),
], ids=["new-placeholder", "unknown-name", "unknown-entry", "broken-template", "not-a-table"])
def test_a_bad_texts_file_is_refused_naming_the_text(tmp_path, content, says):
    lines = refusal(tmp_path, TEXTS_FILE=content)
    assert len(lines) == 1 and lines[0].startswith(
        "gurugrow: configuration error: TEXTS_FILE: "), lines
    assert says in lines[0], lines


def test_a_text_may_drop_a_placeholder(tmp_path):
    app_with(tmp_path, TEXTS_FILE='SMS_CODE = "{code} — ваш код"\n')
    assert texts.SMS_CODE == "{code} — ваш код"


def test_the_texts_command_writes_a_file_a_start_takes_back(tmp_path):
    app = create_app(TEST_ENV, redis_client=fakeredis.FakeRedis())
    out = tmp_path / "texts.toml"
    result = app.test_cli_runner().invoke(args=["gurugrow", "texts", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    written = out.read_text(encoding="utf-8")
    assert 'SMS_CODE = "Код подтверждения: {code}. Никому его не сообщайте."' in written
    assert "[ERROR_MESSAGES]" in written
    app_with(tmp_path, TEXTS_FILE=written)  # every text as it is: accepted
    assert texts.current_texts() == texts.current_texts() and texts.ORDERS_EMPTY == (
        "У вас пока нет заказов.")


def test_a_start_on_a_bad_sets_file_prints_the_line_and_stops(tmp_path):
    """As wsgi.py starts (gunicorn imports it): one line per problem, exit status 1."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    bad = tmp_path / "sets.toml"
    bad.write_text('[sets.men]\ntitle = "Набор"\ncomponents = ["x"]\n', encoding="utf-8")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
           **TEST_ENV, "RECOMMENDED_SETS_FILE": str(bad), "REDIS_URL": "redis://127.0.0.1:9/0"}
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=tmp_path, env={
        **env, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=60,
        check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        f"gurugrow: configuration error: RECOMMENDED_SETS_FILE: {bad}: set men (line 1): "
        "bundle must be a non-empty string"), result.stderr


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_the_preview_is_shown_without_a_price_when_the_catalog_is_down(tmp_path, shop, kind):
    client = app_with(tmp_path, RECOMMENDED_SETS_FILE=TWO_SETS).test_client()
    shop.add_customer(626518, "+79990001122", **{TG_FIELD: "123456789"})
    shop.fail["products"] = (503, {"success": False, "errorMsg": "down"})
    answer = call(client, "preview", kind, offerCode="starter")
    assert answer["status"] == "ok" and "Стоимость" not in answer["text"], answer
