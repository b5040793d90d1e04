"""The dispatch form: one command with its parameters, confirmed by the person sending it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from django import forms

from shared.dispatch import MODES

# The commands the form offers (a schedule is the optimizer's, sent through the API).
FORM_COMMANDS = (
    ("set_battery_power", "Set battery power"),
    ("set_charger_power_limit", "Set charger power limit"),
    ("set_grid_limit", "Set grid limit"),
    ("set_mode", "Set mode"),
)
# The form fields each command's params are made of (absent ones are left out, so the service
# reports a missing one as the API does).
COMMAND_PARAMS = {
    "set_battery_power": ("power_kw", "unit_id"),
    "set_charger_power_limit": ("charger_id", "limit_kw"),
    "set_grid_limit": ("limit_kw",),
    "set_mode": ("mode",),
}


class DispatchForm(forms.Form):
    """A command for the site; errors from the dispatch service land on their fields."""

    command = forms.ChoiceField(choices=FORM_COMMANDS)
    power_kw = forms.FloatField(required=False, label="Battery power (kW, + discharge, − charge)")
    unit_id = forms.CharField(required=False, max_length=32, label="Battery unit (blank: all)")
    # The site's chargers (set per form): a value not among them, forged or stale, is this
    # field's error, as the gateway would refuse an unknown charger.
    charger_id = forms.ChoiceField(required=False, label="Charger")
    limit_kw = forms.FloatField(required=False, label="Limit (kW)")
    mode = forms.ChoiceField(choices=[("", "—"), *((m, m) for m in MODES)], required=False)
    confirm = forms.BooleanField(
        required=True,
        label="I confirm: send this command to the site now",
        error_messages={"required": "Tick to confirm before the command is sent."},
    )

    def __init__(
        self, *args: Any, chargers: Mapping[str, float | None] | None = None, **kwargs: Any
    ):
        """`chargers`: code -> maximum power in kW (enexa.dashboard.services.site_chargers)."""
        super().__init__(*args, **kwargs)
        self.chargers = dict(chargers or {})
        offered = [(code, charger_label(code, kw)) for code, kw in self.chargers.items()]
        blank = "—" if offered else "— (no charger configured)"
        cast(forms.ChoiceField, self.fields["charger_id"]).choices = [("", blank), *offered]

    def params(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            name: data[name]
            for name in COMMAND_PARAMS[data["command"]]
            if data.get(name) not in (None, "")
        }

    def add_service_errors(self, errors: dict[str, list[str]], detail: str) -> None:
        """The service's field errors (`params.power_kw`) on the form's fields; the rest, and
        the detail when no field is named, above the form."""
        for key, messages in errors.items():
            name = key.removeprefix("params.")
            target = name if name in self.fields else None
            for message in messages:
                self.add_error(target, message if target else f"{key}: {message}")
        if not errors:
            self.add_error(None, detail)


def charger_label(code: str, max_kw: float | None) -> str:
    return f"{code} (up to {max_kw:g} kW)" if max_kw else code
