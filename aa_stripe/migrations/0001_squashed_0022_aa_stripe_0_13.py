"""Squash of aa-stripe 0.13.0's migrations 0001-0022: the schema they leave behind, built in one step.

A database that ran aa-stripe's 22 migrations has exactly these tables, columns and indexes, so Django
marks this migration applied there without running it (see ``replaces``); a new database gets the same
tables from it.

Fields are listed in upstream's column order (the order its CreateModel/AddField operations left them).
Upstream stored JSON in django-extensions' ``JSONField``, a TEXT column holding serialized JSON; here those
columns are plain ``TextField``s with the JSON text of upstream's default (``dict`` -> ``"{}"``,
``[]`` -> ``"[]"``). Later migrations turn them into Django's ``JSONField``.
"""

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

USER_MODEL = getattr(settings, "STRIPE_USER_MODEL", None) or settings.AUTH_USER_MODEL

# fmt: off
CURRENCY_CHOICES = [
    ("usd", "USD"), ("aed", "AED"), ("afn", "AFN"), ("all", "ALL"), ("amd", "AMD"), ("ang", "ANG"),
    ("aoa", "AOA"), ("ars", "ARS"), ("aud", "AUD"), ("awg", "AWG"), ("azn", "AZN"), ("bam", "BAM"),
    ("bbd", "BBD"), ("bdt", "BDT"), ("bgn", "BGN"), ("bif", "BIF"), ("bmd", "BMD"), ("bnd", "BND"),
    ("bob", "BOB"), ("brl", "BRL"), ("bsd", "BSD"), ("bwp", "BWP"), ("bzd", "BZD"), ("cad", "CAD"),
    ("cdf", "CDF"), ("chf", "CHF"), ("clp", "CLP"), ("cny", "CNY"), ("cop", "COP"), ("crc", "CRC"),
    ("cve", "CVE"), ("czk", "CZK"), ("djf", "DJF"), ("dkk", "DKK"), ("dop", "DOP"), ("dzd", "DZD"),
    ("egp", "EGP"), ("etb", "ETB"), ("eur", "EUR"), ("fjd", "FJD"), ("fkp", "FKP"), ("gbp", "GBP"),
    ("gel", "GEL"), ("gip", "GIP"), ("gmd", "GMD"), ("gnf", "GNF"), ("gtq", "GTQ"), ("gyd", "GYD"),
    ("hkd", "HKD"), ("hnl", "HNL"), ("hrk", "HRK"), ("htg", "HTG"), ("huf", "HUF"), ("idr", "IDR"),
    ("ils", "ILS"), ("inr", "INR"), ("isk", "ISK"), ("jmd", "JMD"), ("jpy", "JPY"), ("kes", "KES"),
    ("kgs", "KGS"), ("khr", "KHR"), ("kmf", "KMF"), ("krw", "KRW"), ("kyd", "KYD"), ("kzt", "KZT"),
    ("lak", "LAK"), ("lbp", "LBP"), ("lkr", "LKR"), ("lrd", "LRD"), ("lsl", "LSL"), ("mad", "MAD"),
    ("mdl", "MDL"), ("mga", "MGA"), ("mkd", "MKD"), ("mmk", "MMK"), ("mnt", "MNT"), ("mop", "MOP"),
    ("mro", "MRO"), ("mur", "MUR"), ("mvr", "MVR"), ("mwk", "MWK"), ("mxn", "MXN"), ("myr", "MYR"),
    ("mzn", "MZN"), ("nad", "NAD"), ("ngn", "NGN"), ("nio", "NIO"), ("nok", "NOK"), ("npr", "NPR"),
    ("nzd", "NZD"), ("pab", "PAB"), ("pen", "PEN"), ("pgk", "PGK"), ("php", "PHP"), ("pkr", "PKR"),
    ("pln", "PLN"), ("pyg", "PYG"), ("qar", "QAR"), ("ron", "RON"), ("rsd", "RSD"), ("rub", "RUB"),
    ("rwf", "RWF"), ("sar", "SAR"), ("sbd", "SBD"), ("scr", "SCR"), ("sek", "SEK"), ("sgd", "SGD"),
    ("shp", "SHP"), ("sll", "SLL"), ("sos", "SOS"), ("srd", "SRD"), ("std", "STD"), ("svc", "SVC"),
    ("szl", "SZL"), ("thb", "THB"), ("tjs", "TJS"), ("top", "TOP"), ("try", "TRY"), ("ttd", "TTD"),
    ("twd", "TWD"), ("tzs", "TZS"), ("uah", "UAH"), ("ugx", "UGX"), ("uyu", "UYU"), ("uzs", "UZS"),
    ("vnd", "VND"), ("vuv", "VUV"), ("wst", "WST"), ("xaf", "XAF"), ("xcd", "XCD"), ("xof", "XOF"),
    ("xpf", "XPF"), ("yer", "YER"), ("zar", "ZAR"), ("zmw", "ZMW"),
]
# fmt: on


class Migration(migrations.Migration):
    initial = True

    replaces = [
        ("aa_stripe", "0001_initial"),
        ("aa_stripe", "0002_auto_20170607_0714"),
        ("aa_stripe", "0003_auto_20170608_1103"),
        ("aa_stripe", "0004_auto_20170613_0419"),
        ("aa_stripe", "0005_auto_20170613_0614"),
        ("aa_stripe", "0006_subscription_end_cancel"),
        ("aa_stripe", "0007_auto_20170630_0557"),
        ("aa_stripe", "0008_auto_20170630_0734"),
        ("aa_stripe", "0009_auto_20170725_1205"),
        ("aa_stripe", "0010_auto_20170822_1004"),
        ("aa_stripe", "0011_auto_20170907_1201"),
        ("aa_stripe", "0012_auto_20170908_1150"),
        ("aa_stripe", "0013_stripesubscription_at_period_end"),
        ("aa_stripe", "0014_stripecharge_charge_attempt_failed"),
        ("aa_stripe", "0015_auto_20170925_0838"),
        ("aa_stripe", "0016_stripecharge_is_refunded"),
        ("aa_stripe", "0017_stripecharge_manual_charge"),
        ("aa_stripe", "0018_stripecustomer_sources"),
        ("aa_stripe", "0019_stripecustomer_default_source"),
        ("aa_stripe", "0020_stripecharge_statement_descriptor"),
        ("aa_stripe", "0021_auto_20190906_1623"),
        ("aa_stripe", "0022_stripecharge_amount_refunded"),
    ]

    dependencies = [
        migrations.swappable_dependency(USER_MODEL),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.CreateModel(
            name="StripeCustomer",
            fields=[
                (
                    "id",
                    models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                ),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("updated", models.DateTimeField(auto_now=True)),
                ("stripe_response", models.TextField(blank=True, default="{}")),
                ("stripe_js_response", models.TextField(blank=True, default="{}")),
                ("stripe_customer_id", models.CharField(db_index=True, max_length=255)),
                ("is_active", models.BooleanField(default=True)),
                ("is_created_at_stripe", models.BooleanField(default=False)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="stripe_customers",
                        to=USER_MODEL,
                    ),
                ),
                ("sources", models.TextField(blank=True, default="[]")),
                (
                    "default_source",
                    models.CharField(
                        blank=True, help_text="ID of default source from Stripe", max_length=255
                    ),
                ),
            ],
            options={
                "ordering": ["id"],
            },
        ),
        migrations.CreateModel(
            name="StripeSubscriptionPlan",
            fields=[
                (
                    "id",
                    models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                ),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("updated", models.DateTimeField(auto_now=True)),
                ("stripe_response", models.TextField(blank=True, default="{}")),
                ("is_created_at_stripe", models.BooleanField(default=False)),
                (
                    "source",
                    models.TextField(
                        blank=True, default="{}", help_text='Source of the plan, ie: {"prescription": 1}'
                    ),
                ),
                (
                    "amount",
                    models.BigIntegerField(
                        help_text="In cents. More: https://stripe.com/docs/api#create_plan-amount"
                    ),
                ),
                (
                    "currency",
                    models.CharField(
                        default="USD",
                        help_text="3 letter ISO code, default USD, https://stripe.com/docs/api#create_plan-currency",
                        max_length=3,
                    ),
                ),
                (
                    "name",
                    models.CharField(
                        help_text="Name of the plan, to be displayed on invoices and in the web interface.",
                        max_length=255,
                    ),
                ),
                (
                    "interval",
                    models.CharField(
                        choices=[("day", "day"), ("week", "week"), ("month", "month"), ("year", "year")],
                        help_text="Specifies billing frequency. Either day, week, month or year.",
                        max_length=10,
                    ),
                ),
                (
                    "interval_count",
                    models.IntegerField(default=1, validators=[django.core.validators.MinValueValidator(1)]),
                ),
                (
                    "metadata",
                    models.TextField(
                        blank=True,
                        default="{}",
                        help_text="A set of key/value pairs that you can attach to a plan object. It can be useful for storing additional information about the plan in a structured format.",
                    ),
                ),
                (
                    "statement_descriptor",
                    models.CharField(
                        blank=True,
                        help_text="An arbitrary string to be displayed on your customer’s credit card statement.",
                        max_length=22,
                    ),
                ),
                (
                    "trial_period_days",
                    models.IntegerField(
                        default=0,
                        help_text="Specifies a trial period in (an integer number of) days. If you include a trial period, the customer won’t be billed for the first time until the trial period ends. If the customer cancels before the trial period is over, she’ll never be billed at all.",
                        validators=[django.core.validators.MinValueValidator(0)],
                    ),
                ),
            ],
            options={
                "abstract": False,
            },
        ),
        migrations.CreateModel(
            name="StripeCoupon",
            fields=[
                (
                    "id",
                    models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                ),
                ("updated", models.DateTimeField(auto_now=True)),
                ("stripe_response", models.TextField(blank=True, default="{}")),
                ("coupon_id", models.CharField(help_text="Identifier for the coupon", max_length=255)),
                (
                    "amount_off",
                    models.DecimalField(
                        blank=True,
                        decimal_places=2,
                        help_text="Amount (in the currency specified) that will be taken off the subtotal of any invoices for thiscustomer.",
                        max_digits=10,
                        null=True,
                    ),
                ),
                (
                    "currency",
                    models.CharField(
                        blank=True,
                        choices=CURRENCY_CHOICES,
                        help_text="If amount_off has been set, the three-letter ISO code for the currency of the amount to take off.",
                        max_length=3,
                        null=True,
                    ),
                ),
                (
                    "duration",
                    models.CharField(
                        choices=[("forever", "forever"), ("once", "once"), ("repeating", "repeating")],
                        help_text="Describes how long a customer who applies this coupon will get the discount.",
                        max_length=255,
                    ),
                ),
                (
                    "duration_in_months",
                    models.PositiveIntegerField(
                        blank=True,
                        help_text="If duration is repeating, the number of months the coupon applies. Null if coupon duration is forever or once.",
                        null=True,
                    ),
                ),
                (
                    "livemode",
                    models.BooleanField(
                        default=False,
                        help_text="Flag indicating whether the object exists in live mode or test mode.",
                    ),
                ),
                (
                    "max_redemptions",
                    models.PositiveIntegerField(
                        blank=True,
                        help_text="Maximum number of times this coupon can be redeemed, in total, before it is no longer valid.",
                        null=True,
                    ),
                ),
                (
                    "metadata",
                    models.TextField(
                        blank=True,
                        default="{}",
                        help_text="Set of key/value pairs that you can attach to an object. It can be useful for storing additional information about the object in a structured format.",
                    ),
                ),
                (
                    "percent_off",
                    models.PositiveIntegerField(
                        blank=True,
                        help_text="Percent that will be taken off the subtotal of any invoicesfor this customer for the duration of the coupon. For example, a coupon with percent_off of 50 will make a $100 invoice $50 instead.",
                        null=True,
                    ),
                ),
                (
                    "redeem_by",
                    models.DateTimeField(
                        blank=True,
                        help_text="Date after which the coupon can no longer be redeemed.",
                        null=True,
                    ),
                ),
                (
                    "times_redeemed",
                    models.PositiveIntegerField(
                        default=0, help_text="Number of times this coupon has been applied to a customer."
                    ),
                ),
                (
                    "valid",
                    models.BooleanField(
                        default=False,
                        help_text="Taking account of the above properties, whether this coupon can still be applied to a customer.",
                    ),
                ),
                ("created", models.DateTimeField()),
                ("is_deleted", models.BooleanField(default=False)),
                ("is_created_at_stripe", models.BooleanField(default=False)),
            ],
            options={
                "abstract": False,
            },
        ),
        migrations.CreateModel(
            name="StripeCharge",
            fields=[
                (
                    "id",
                    models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                ),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("updated", models.DateTimeField(auto_now=True)),
                ("amount", models.IntegerField(help_text="in cents", null=True)),
                ("is_charged", models.BooleanField(default=False)),
                ("stripe_charge_id", models.CharField(blank=True, db_index=True, max_length=255)),
                ("description", models.CharField(help_text="Description sent to Stripe", max_length=255)),
                ("comment", models.CharField(help_text="Comment for internal information", max_length=255)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="stripe_charges",
                        to=USER_MODEL,
                    ),
                ),
                ("stripe_response", models.TextField(blank=True, default="{}")),
                (
                    "customer",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to="aa_stripe.stripecustomer",
                    ),
                ),
                (
                    "content_type",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        to="contenttypes.contenttype",
                    ),
                ),
                ("object_id", models.PositiveIntegerField(db_index=True, null=True)),
                ("charge_attempt_failed", models.BooleanField(default=False)),
                ("is_refunded", models.BooleanField(default=False)),
                ("stripe_refund_id", models.CharField(blank=True, db_index=True, max_length=255)),
                ("is_manual_charge", models.BooleanField(default=False)),
                ("statement_descriptor", models.CharField(blank=True, max_length=22)),
                ("amount_refunded", models.IntegerField(default=0, help_text="in cents", null=True)),
            ],
        ),
        migrations.CreateModel(
            name="StripeSubscription",
            fields=[
                (
                    "id",
                    models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                ),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("updated", models.DateTimeField(auto_now=True)),
                ("stripe_response", models.TextField(blank=True, default="{}")),
                ("stripe_subscription_id", models.CharField(blank=True, db_index=True, max_length=255)),
                ("is_created_at_stripe", models.BooleanField(default=False)),
                (
                    "status",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("trialing", "trialing"),
                            ("active", "active"),
                            ("past_due", "past_due"),
                            ("canceled", "canceled"),
                            ("unpaid", "unpaid"),
                        ],
                        help_text="https://stripe.com/docs/api/python#subscription_object-status, empty if not sent created at stripe",
                        max_length=255,
                    ),
                ),
                (
                    "metadata",
                    models.TextField(
                        blank=True,
                        default="{}",
                        help_text="https://stripe.com/docs/api/python#create_subscription-metadata",
                    ),
                ),
                (
                    "tax_percent",
                    models.DecimalField(
                        decimal_places=2,
                        default=0,
                        help_text="https://stripe.com/docs/api/python#subscription_object-tax_percent",
                        max_digits=3,
                        validators=[
                            django.core.validators.MinValueValidator(0),
                            django.core.validators.MaxValueValidator(100),
                        ],
                    ),
                ),
                (
                    "customer",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to="aa_stripe.stripecustomer",
                    ),
                ),
                (
                    "plan",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        to="aa_stripe.stripesubscriptionplan",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="stripe_subscriptions",
                        to=USER_MODEL,
                    ),
                ),
                ("end_date", models.DateField(blank=True, db_index=True, null=True)),
                ("canceled_at", models.DateTimeField(blank=True, db_index=True, null=True)),
                (
                    "coupon",
                    models.ForeignKey(
                        blank=True,
                        help_text="https://stripe.com/docs/api/python#create_subscription-coupon",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to="aa_stripe.stripecoupon",
                    ),
                ),
                ("at_period_end", models.BooleanField(default=False)),
            ],
            options={
                "abstract": False,
            },
        ),
        migrations.CreateModel(
            name="StripeWebhook",
            fields=[
                ("id", models.CharField(max_length=255, primary_key=True, serialize=False)),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("updated", models.DateTimeField(auto_now=True)),
                ("is_parsed", models.BooleanField(default=False)),
                ("raw_data", models.TextField(blank=True, default="{}")),
                ("parse_error", models.TextField(blank=True)),
            ],
            options={
                "ordering": ["-created"],
            },
        ),
    ]
