"""Every Russian text a bot shows or a customer receives, in one place.

``ERROR_MESSAGES`` maps each ``errorCode`` to the neutral sentence sent as ``message``.
"""

from __future__ import annotations

SMS_CODE = "Код подтверждения: {code}. Никому его не сообщайте."
# The bot's message when the code goes by a call (gurugrow/routes.py ``bot_text``);
# {digits}: how many digits the code has.
CALL_CODE_SENT = ("Вам поступит звонок. Введите последние {digits} цифры номера, с "
                  "которого позвонят. Отвечать на звонок не нужно.")
CALL_NUMBER_SENT = ("Позвоните с номера {maskedPhone} на номер {callNumber}. Звонок "
                    "сбросится сам, говорить ничего не нужно. Затем вернитесь в этот чат.")
# /auth/check without a code while the customer has not called yet (status pending).
CALL_NOT_MADE_YET = ("Звонок с вашего номера ещё не поступил. Позвоните на номер из "
                     "сообщения и проверьте ещё раз.")
VOICE_CODE_SENT = ("Вам поступит звонок: робот продиктует код из {digits} цифр. Введите его "
                   "здесь.")

UNLINKED = (
    "Учётная запись отвязана. Для входа в защищённые разделы потребуется снова "
    "подтвердить номер телефона."
)

ERROR_MESSAGES: dict[str, str] = {
    "invalid_request": "Не удалось разобрать запрос. Попробуйте ещё раз.",
    "invalid_phone": "Проверьте номер телефона: он указан в неверном формате.",
    "invalid_channel": "Этот мессенджер не поддерживается.",
    "invalid_identity": "Не удалось определить ваш аккаунт в мессенджере.",
    "invalid_route": "Такой способ доставки кода не поддерживается.",
    "invalid_code": "Код неверный. Проверьте его и попробуйте ещё раз.",
    "expired": "Срок действия кода истёк. Запросите новый код.",
    "too_many_attempts": "Слишком много неверных попыток. Запросите новый код.",
    "resend_too_early": "Новый код можно будет запросить чуть позже.",
    "rate_limited": "Превышено количество запросов кода. Попробуйте позже.",
    "session_not_found": "Сессия подтверждения не найдена. Запросите новый код.",
    "crm_unavailable": "Сервис временно недоступен. Попробуйте чуть позже.",
    "delivery_failed": "Не удалось отправить код. Попробуйте позже.",
    "dedupe_failed": "Не удалось проверить номер телефона. Обратитесь к менеджеру.",
    "conflict": "Этот аккаунт уже связан с другим клиентом. Обратитесь к менеджеру.",
    "customer_mismatch": "Данные клиента не совпадают. Обратитесь к менеджеру.",
    "storage_unavailable": "Сервис временно недоступен. Попробуйте чуть позже.",
    "internal_error": "Что-то пошло не так. Попробуйте чуть позже.",
    "invalid_limit": "Не удалось разобрать количество заказов.",
    "unknown_offer": "Такой набор не найден.",
    "bundle_unavailable": "Этот набор сейчас недоступен. Обратитесь к менеджеру.",
    "order_failed": "Не получилось оформить заказ. Подключаем менеджера.",
    "phone_country_not_allowed": "Коды отправляются только на номера России, Казахстана и "
                                 "Беларуси.",
    "send_budget_exhausted": "Отправка кодов временно недоступна. Попробуйте позже.",
    "in_progress": "Запрос уже выполняется. Подождите несколько секунд.",
    "order_not_found": "Заказ не найден.",
    "unavailable_item": "Одного из товаров сейчас нет в наличии. Обратитесь к менеджеру.",
    "not_authorized": "Аккаунт мессенджера не привязан. Подтвердите номер телефона.",
    "cost_budget_exhausted": "Отправка кодов временно недоступна. Попробуйте позже.",
    # Contact verification (POST /auth/contact)
    "contact_channel_not_allowed": "Подтверждение контактом здесь недоступно. Подтвердите "
                                   "номер кодом.",
    "contact_not_own": "Поделитесь, пожалуйста, своим контактом: кнопкой «Поделиться "
                       "контактом».",
    "customer_not_found": "Мы не нашли покупок на этот номер. Можем подобрать для вас набор.",
}


# invalid_request for a body that is neither valid form nor valid JSON for its
# Content-Type: names the two types the service reads.
BODY_NOT_READ = ("Не удалось разобрать запрос: отправьте тело как "
                 "application/x-www-form-urlencoded или application/json.")


def error_message(error_code: str | None) -> str | None:
    """The customer-facing sentence for an ``errorCode`` (None for none)."""
    if error_code is None:
        return None
    return ERROR_MESSAGES.get(error_code, ERROR_MESSAGES["invalid_request"])


# -- My orders ------------------------------------------------------------------------
STATUS_LABELS = {"assembling": "Собираем заказ", "delivery": "В доставке",
                 "complete": "Получен"}
# The line of the orders list that tells where an order is.
STATUS_LINES = {"assembling": "📦 Собираем ваш заказ", "delivery": "🚚 Уже едет к вам",
                "complete": "✅ Заказ получен"}
DELIVERY_NAMES = {"pr-rs": "Почта РФ", "5post": "5Post",
                  "sdek-v-2-7b30522f5b0a597f679345a92b57c324": "СДЭК"}
DELIVERY_NAME_DEFAULT = "Доставка"

ORDERS_HEADER = "Твои заказы 👇\n\nМожно отследить текущий заказ или быстро повторить прошлый."
ORDERS_EMPTY = "У вас пока нет заказов."
ORDER_LIST_ENTRY = "🗒️Номер заказа: {number}\n📆Оформлен: {date}\n\n{status_line}\n\n{items}"
ORDER_LIST_ADDRESS = "🚙{address}"
ORDER_LIST_TRACKING = "🔍Отследить заказ: {url}"
ORDER_DETAIL = (
    "Вот этот заказ 👇\n\n{number}\n{date}\n{status}\n\n{items}\n\n{delivery}\n\nЧто сделаем?"
)
ORDER_DETAIL_DELIVERY = "{name}: {address}"
ORDER_REPEAT_CONFIRM = (
    "Заказ {number}\n\nВот этот заказ 👇\n\n{number}\n{date}\n\n🗒️Состав:\n{items}\n\n"
    "🚙Доставка:\n{address}\n\nУверены, что хотите его повторить?"
)
ORDER_TRACKING = "📬 Ваш заказ уже едет к вам\n\nВот ссылка для отслеживания 👇\n{url}"
ORDER_ITEM = "• {name} x{quantity}"
ITEM_NAME_DEFAULT = "Товар"

REPEAT_CREATED = (
    "Заказ оформлен! 👍\n\nНомер вашего заказа: {number}\n\nПока что мы не можем оформить "
    "оплату через бота, поэтому придётся подключить менеджера. Уже спешим на помощь! 🦸\n\n"
    "А если хотите что-то поменять, то можете пока написать, что нужно скорректировать, "
    "мы обязательно поможем."
)


# -- Recommended sets -----------------------------------------------------------------
RECOMMENDED_PREVIEW = "{title}\n\nВ набор входит:\n{components}\n\nОформляем заказ?"
# The same when RetailCRM's catalog gives the bundle a price ({price}: "1 990 ₽").
RECOMMENDED_PREVIEW_PRICED = ("{title}\n\nВ набор входит:\n{components}\n\nСтоимость: "
                              "{price}\n\nОформляем заказ?")
RECOMMENDED_COMPONENT = "• {name}"
RECOMMENDED_COMMENT = "Заказ создан чат-ботом по рекомендации: {offerCode}"
RECOMMENDED_CREATED = (
    "Заказ оформлен! 👍\n\nНомер вашего заказа: {number}\n\nМенеджер скоро свяжется с вами, "
    "чтобы подтвердить состав, доставку и оплату."
)
MANAGER_HANDOFF = (
    "Не получилось оформить заказ автоматически 😔\n\nУже подключаем менеджера: он поможет "
    "оформить заказ. А можно попробовать ещё раз чуть позже."
)


# -- Callers (HTTP 401 for a request without a valid API token) -----------------------
ERROR_MESSAGES.update({
    "unauthorized": "Нет доступа к сервису. Обратитесь к администратору бота.",
})


# -- Answers outside the contract: an unknown path or method, a body over the limit, and
# nginx's own errors (400, 429, 502, 504) ---------------------------------------------------
# deploy/nginx/gurugrow.conf repeats these in its error pages (tests keep them in step).
ERROR_MESSAGES.update({
    "not_found": "Такого адреса нет.",
    "method_not_allowed": "Этот адрес не принимает такой метод запроса.",
    "bad_request": "Некорректный запрос.",
    "too_many_requests": "Слишком много запросов. Попробуйте чуть позже.",
    "body_too_large": "Запрос слишком большой.",
    "service_unavailable": "Сервис временно недоступен. Попробуйте чуть позже.",
    "service_timeout": "Сервис не ответил вовремя. Попробуйте чуть позже.",
})


# -- RetailCRM quota (errorCode=busy) ---------------------------------------------------
ERROR_MESSAGES["busy"] = ("Сейчас очень много обращений. Пожалуйста, попробуйте ещё раз "
                          "через несколько секунд.")


# -- Free-text fields (a name with nothing readable in it, or too long) --------------------
ERROR_MESSAGES.update({
    "invalid_first_name": "Проверьте имя: оно пустое или слишком длинное.",
    "invalid_last_name": "Проверьте фамилию: она пустая или слишком длинная.",
    "invalid_email": "Проверьте адрес почты: он пустой или слишком длинный.",
})


# -- A shop's own wording: TEXTS_FILE overrides texts by name ------------------------------
# Every UPPER_CASE text above (a string, or a table of strings such as ERROR_MESSAGES) can
# be replaced by a TOML file: `NAME = "..."` for a string, `[NAME]` with `key = "..."` for
# a table entry. A name that is no text here, or a {placeholder} its original lacks, is
# refused at start (``override_problems``). Applied per process at app build.
_defaults: dict[str, str | dict[str, str]] = {}


def _text_names() -> dict[str, str | dict[str, str]]:
    """The original texts by name: each taken the first time it is seen, before any
    override can touch it (a text or table entry added later is taken then)."""
    for name, value in globals().items():
        if not name.isupper() or name.startswith("_"):
            continue
        if isinstance(value, str):
            _defaults.setdefault(name, value)
        elif isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in value.items()):
            table = _defaults.setdefault(name, {})
            if isinstance(table, dict):
                for key, text in value.items():
                    table.setdefault(key, text)
    return _defaults


def _placeholders(text: str) -> set[str]:
    import string

    return {field.split(".")[0].split("[")[0] for _, field, _, _ in
            string.Formatter().parse(text) if field is not None}


def override_problems(overrides: dict[str, object]) -> list[str]:
    """One line per override a start refuses (an unknown name, a non-string, a
    {placeholder} the original lacks); empty when every override fits."""
    names, problems = _text_names(), []
    flat: list[tuple[str, str, object]] = []
    for name, value in overrides.items():
        original = names.get(name)
        if original is None:
            problems.append(f"unknown text {name} (`make texts` writes every name)")
        elif isinstance(original, dict):
            if not isinstance(value, dict):
                problems.append(f"{name} is a table: write [{name}] and key = \"text\" lines")
                continue
            for key, text in value.items():
                if key not in original:
                    problems.append(f"unknown text {name}.{key}")
                else:
                    flat.append((f"{name}.{key}", original[key], text))
        else:
            flat.append((name, original, value))
    for label, original, text in flat:
        if not isinstance(text, str):
            problems.append(f"{label} must be a string")
            continue
        try:
            extra = _placeholders(text) - _placeholders(original)
        except ValueError:
            problems.append(f"{label} has an unbalanced {{ or }} (write {{{{ or }}}} for one)")
            continue
        if extra:
            allowed = ", ".join(sorted(f"{{{p}}}" for p in _placeholders(original)))
            problems.append(f"{label} uses {', '.join(sorted('{' + p + '}' for p in extra))}, "
                            f"which the original lacks (it may use: {allowed or 'none'})")
    return problems


def apply_overrides(overrides: dict[str, object]) -> None:
    """Every text back to its original, then ``overrides`` (already checked) on top."""
    module = globals()
    for name, original in _text_names().items():
        value = overrides.get(name)
        if isinstance(original, dict):
            table = module[name]  # updated in place: others hold it
            table.update(original)
            table.update(value if isinstance(value, dict) else {})
        else:
            module[name] = value if isinstance(value, str) else original


def current_texts() -> dict[str, str | dict[str, str]]:
    """Every text by name as the process uses it now."""
    module = globals()
    return {name: (dict(module[name]) if isinstance(original, dict) else module[name])
            for name, original in _text_names().items()}
