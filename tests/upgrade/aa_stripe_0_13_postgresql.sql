-- aa-stripe 0.13.0 on PostgreSQL, made by tests/upgrade/make_dumps.py; do not edit.
-- data only (load the schema dump first)
--
-- PostgreSQL database dump
--

-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

--
-- Data for Name: auth_user; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.auth_user (id, password, last_login, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined) VALUES (1, '!unusable-admin', NULL, true, 'admin', '', '', 'admin@example.com', true, true, '2023-05-04 10:00:00+00');
INSERT INTO public.auth_user (id, password, last_login, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined) VALUES (2, '!unusable-alice', NULL, false, 'alice', 'Alice', '', 'alice@example.com', false, true, '2023-05-04 10:01:00+00');
INSERT INTO public.auth_user (id, password, last_login, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined) VALUES (3, '!unusable-bob', NULL, false, 'bob', '', '', 'bob@example.com', false, true, '2023-05-04 10:02:00+00');

--
-- Data for Name: aa_stripe_stripecustomer; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.aa_stripe_stripecustomer (id, created, updated, stripe_response, stripe_js_response, stripe_customer_id, is_active, is_created_at_stripe, user_id, sources, default_source) VALUES (1, '2023-05-04 10:00:00+00', '2023-05-04 10:01:00+00', '{"id": "cus_013Alice", "object": "customer", "email": null, "description": "alice id: 2", "default_source": "card_013AliceVisa", "sources": {"object": "list", "data": [{"id": "card_013AliceVisa", "object": "card", "brand": "Visa", "last4": "4242", "exp_month": 12, "exp_year": 2030, "customer": "cus_013Alice", "country": "US", "funding": "credit", "metadata": {}}, {"id": "card_013AliceMc", "object": "card", "brand": "MasterCard", "last4": "4444", "exp_month": 12, "exp_year": 2030, "customer": "cus_013Alice", "country": "US", "funding": "credit", "metadata": {}}], "has_more": false}}', '{"id": "tok_013Alice", "object": "token", "type": "card", "card": {"id": "card_013AliceVisa", "brand": "Visa", "last4": "4242"}}', 'cus_013Alice', true, true, 2, '[{"id": "card_013AliceVisa", "object": "card", "brand": "Visa", "last4": "4242", "exp_month": 12, "exp_year": 2030, "customer": "cus_013Alice", "country": "US", "funding": "credit", "metadata": {}}, {"id": "card_013AliceMc", "object": "card", "brand": "MasterCard", "last4": "4444", "exp_month": 12, "exp_year": 2030, "customer": "cus_013Alice", "country": "US", "funding": "credit", "metadata": {}}]', 'card_013AliceVisa');
INSERT INTO public.aa_stripe_stripecustomer (id, created, updated, stripe_response, stripe_js_response, stripe_customer_id, is_active, is_created_at_stripe, user_id, sources, default_source) VALUES (2, '2023-05-04 10:01:00+00', '2023-05-04 10:02:00+00', '{"id": "cus_013BobOld", "object": "customer"}', '{"id": "tok_013BobOld", "object": "token"}', 'cus_013BobOld', false, true, 3, '[]', '');
INSERT INTO public.aa_stripe_stripecustomer (id, created, updated, stripe_response, stripe_js_response, stripe_customer_id, is_active, is_created_at_stripe, user_id, sources, default_source) VALUES (3, '2023-05-04 10:02:00+00', '2023-05-04 10:03:00+00', '{}', '{"id": "tok_013BobNew", "object": "token", "type": "card"}', '', true, false, 3, '[]', '');

--
-- Data for Name: django_content_type; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.django_content_type (id, app_label, model) VALUES (1, 'auth', 'permission');
INSERT INTO public.django_content_type (id, app_label, model) VALUES (2, 'auth', 'group');
INSERT INTO public.django_content_type (id, app_label, model) VALUES (3, 'auth', 'user');
INSERT INTO public.django_content_type (id, app_label, model) VALUES (4, 'contenttypes', 'contenttype');
INSERT INTO public.django_content_type (id, app_label, model) VALUES (5, 'sessions', 'session');
INSERT INTO public.django_content_type (id, app_label, model) VALUES (6, 'sites', 'site');
INSERT INTO public.django_content_type (id, app_label, model) VALUES (7, 'aa_stripe', 'stripecharge');
INSERT INTO public.django_content_type (id, app_label, model) VALUES (8, 'aa_stripe', 'stripecustomer');
INSERT INTO public.django_content_type (id, app_label, model) VALUES (9, 'aa_stripe', 'stripesubscription');
INSERT INTO public.django_content_type (id, app_label, model) VALUES (10, 'aa_stripe', 'stripesubscriptionplan');
INSERT INTO public.django_content_type (id, app_label, model) VALUES (11, 'aa_stripe', 'stripewebhook');
INSERT INTO public.django_content_type (id, app_label, model) VALUES (12, 'aa_stripe', 'stripecoupon');

--
-- Data for Name: aa_stripe_stripecharge; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.aa_stripe_stripecharge (id, created, updated, amount, is_charged, stripe_charge_id, description, comment, user_id, stripe_response, customer_id, content_type_id, object_id, charge_attempt_failed, is_refunded, stripe_refund_id, is_manual_charge, statement_descriptor, amount_refunded) VALUES (1, '2023-05-04 10:10:00+00', '2023-05-04 10:11:00+00', 1000, true, 'ch_013Partial', 'Order #1', 'partly refunded by support', 2, '{"id": "ch_013Partial", "object": "charge", "amount": 1000, "amount_refunded": 300, "currency": "usd", "paid": true, "refunded": false, "customer": "cus_013Alice", "metadata": {"object_id": "1", "content_type_id": "6"}}', 1, 6, 1, false, false, 're_013First', false, 'AA SHOP 1', 300);
INSERT INTO public.aa_stripe_stripecharge (id, created, updated, amount, is_charged, stripe_charge_id, description, comment, user_id, stripe_response, customer_id, content_type_id, object_id, charge_attempt_failed, is_refunded, stripe_refund_id, is_manual_charge, statement_descriptor, amount_refunded) VALUES (2, '2023-05-04 10:11:00+00', '2023-05-04 10:12:00+00', 2500, false, 'ch_013Declined', 'Order #2', '', 3, '{"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds", "charge": "ch_013Declined", "message": "Your card has insufficient funds.", "param": ""}}', 2, NULL, NULL, true, false, '', false, '', 0);
INSERT INTO public.aa_stripe_stripecharge (id, created, updated, amount, is_charged, stripe_charge_id, description, comment, user_id, stripe_response, customer_id, content_type_id, object_id, charge_attempt_failed, is_refunded, stripe_refund_id, is_manual_charge, statement_descriptor, amount_refunded) VALUES (3, '2023-05-04 10:12:00+00', '2023-05-04 10:13:00+00', 499, false, '', 'Manual invoice', 'charge by hand', 2, '{}', NULL, NULL, NULL, false, false, '', true, '', NULL);
INSERT INTO public.aa_stripe_stripecharge (id, created, updated, amount, is_charged, stripe_charge_id, description, comment, user_id, stripe_response, customer_id, content_type_id, object_id, charge_attempt_failed, is_refunded, stripe_refund_id, is_manual_charge, statement_descriptor, amount_refunded) VALUES (4, '2023-05-04 10:13:00+00', '2023-05-04 10:14:00+00', 700, true, 'ch_013Refunded', 'Order #3', '', 2, '{"id": "ch_013Refunded", "object": "charge", "amount": 700, "refunded": true}', 1, NULL, NULL, false, true, 're_013Full', false, '', 700);

--
-- Data for Name: aa_stripe_stripecoupon; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.aa_stripe_stripecoupon (id, updated, stripe_response, coupon_id, amount_off, currency, duration, duration_in_months, livemode, max_redemptions, metadata, percent_off, redeem_by, times_redeemed, valid, created, is_deleted, is_created_at_stripe) VALUES (1, '2023-05-04 10:31:00+00', '{"id": "SPRING10", "object": "coupon"}', 'SPRING10', NULL, NULL, 'once', NULL, false, NULL, '{}', 10, NULL, 0, false, '2019-03-01 00:00:00+00', true, true);
INSERT INTO public.aa_stripe_stripecoupon (id, updated, stripe_response, coupon_id, amount_off, currency, duration, duration_in_months, livemode, max_redemptions, metadata, percent_off, redeem_by, times_redeemed, valid, created, is_deleted, is_created_at_stripe) VALUES (2, '2023-05-04 10:32:00+00', '{"id": "SPRING10", "object": "coupon", "percent_off": 15}', 'SPRING10', NULL, NULL, 'repeating', 3, false, 100, '', 15, '2030-06-01 00:00:00+00', 4, true, '2020-03-01 12:30:00+00', false, true);
INSERT INTO public.aa_stripe_stripecoupon (id, updated, stripe_response, coupon_id, amount_off, currency, duration, duration_in_months, livemode, max_redemptions, metadata, percent_off, redeem_by, times_redeemed, valid, created, is_deleted, is_created_at_stripe) VALUES (3, '2023-05-04 10:33:00+00', '{"id": "FIVEOFF", "object": "coupon", "amount_off": 500}', 'FIVEOFF', 5.00, 'usd', 'forever', NULL, false, NULL, '{"campaign": "launch"}', NULL, NULL, 0, false, '2021-01-15 00:00:00+00', true, true);

--
-- Data for Name: aa_stripe_stripesubscriptionplan; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.aa_stripe_stripesubscriptionplan (id, created, updated, stripe_response, is_created_at_stripe, source, amount, currency, name, "interval", interval_count, metadata, statement_descriptor, trial_period_days) VALUES (1, '2023-05-04 10:20:00+00', '2023-05-04 10:21:00+00', '{"id": "1", "object": "plan", "amount": 5000, "currency": "usd", "interval": "month", "interval_count": 3}', true, '{"prescription": 1}', 5000, 'USD', 'gold-quarterly', 'month', 3, '{"tier": "gold"}', 'GOLD PLAN', 7);
INSERT INTO public.aa_stripe_stripesubscriptionplan (id, created, updated, stripe_response, is_created_at_stripe, source, amount, currency, name, "interval", interval_count, metadata, statement_descriptor, trial_period_days) VALUES (2, '2023-05-04 10:21:00+00', '2023-05-04 10:22:00+00', '{}', false, '{}', 900, 'eur', 'draft-weekly', 'week', 1, 'tier: draft (typed in the admin)', '', 0);

--
-- Data for Name: aa_stripe_stripesubscription; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.aa_stripe_stripesubscription (id, created, updated, stripe_response, stripe_subscription_id, is_created_at_stripe, status, metadata, tax_percent, customer_id, plan_id, user_id, end_date, canceled_at, coupon_id, at_period_end) VALUES (1, '2023-05-04 10:40:00+00', '2023-05-04 10:41:00+00', '{"id": "sub_013Active", "object": "subscription", "status": "active", "discount": {"coupon": {"id": "SPRING10"}}}', 'sub_013Active', true, 'active', '{"order": "A-1"}', 8.25, 1, 1, 2, '2031-01-01', NULL, 2, false);
INSERT INTO public.aa_stripe_stripesubscription (id, created, updated, stripe_response, stripe_subscription_id, is_created_at_stripe, status, metadata, tax_percent, customer_id, plan_id, user_id, end_date, canceled_at, coupon_id, at_period_end) VALUES (2, '2023-05-04 10:41:00+00', '2023-05-04 10:42:00+00', '{"id": "sub_013Canceled", "object": "subscription", "status": "canceled"}', 'sub_013Canceled', true, 'canceled', '{}', 0.00, 2, 1, 3, NULL, '2023-05-04 10:50:00+00', NULL, true);

--
-- Data for Name: aa_stripe_stripewebhook; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.aa_stripe_stripewebhook (id, created, updated, is_parsed, raw_data, parse_error) VALUES ('evt_013CouponCreated', '2023-05-04 10:50:00+00', '2023-05-04 10:51:00+00', true, '{"id": "evt_013CouponCreated", "object": "event", "type": "coupon.created", "created": 1583065801, "livemode": false, "api_version": "2017-06-05", "data": {"object": {"id": "SPRING10", "object": "coupon", "created": 1583065800, "percent_off": 15}}}', '');
INSERT INTO public.aa_stripe_stripewebhook (id, created, updated, is_parsed, raw_data, parse_error) VALUES ('evt_013CouponFailed', '2023-05-04 10:51:00+00', '2023-05-04 10:52:00+00', false, '{"id": "evt_013CouponFailed", "object": "event", "type": "coupon.created", "created": 1683194401, "livemode": false, "api_version": "2017-06-05", "data": {"object": {"id": "SUMMER20", "object": "coupon", "created": 1683194400, "percent_off": 20, "duration": "once", "valid": true, "times_redeemed": 0, "livemode": false, "metadata": {"season": "summer"}}}}', 'Coupon with this coupon_id does not exists at Stripe API');
INSERT INTO public.aa_stripe_stripewebhook (id, created, updated, is_parsed, raw_data, parse_error) VALUES ('evt_013CustomerUpdated', '2023-05-04 10:52:00+00', '2023-05-04 10:53:00+00', false, '{"id": "evt_013CustomerUpdated", "object": "event", "type": "customer.updated", "created": 1683194500, "livemode": false, "api_version": "2017-06-05", "data": {"object": {"id": "cus_013Alice", "object": "customer", "default_source": "card_013AliceMc", "sources": {"object": "list", "data": [{"id": "card_013AliceVisa", "object": "card", "brand": "Visa", "last4": "4242", "exp_month": 12, "exp_year": 2030, "customer": "cus_013Alice", "country": "US", "funding": "credit", "metadata": {}}, {"id": "card_013AliceMc", "object": "card", "brand": "MasterCard", "last4": "4444", "exp_month": 12, "exp_year": 2030, "customer": "cus_013Alice", "country": "US", "funding": "credit", "metadata": {}}], "has_more": false}}}}', '');
INSERT INTO public.aa_stripe_stripewebhook (id, created, updated, is_parsed, raw_data, parse_error) VALUES ('evt_013Dispute', '2023-05-04 10:53:00+00', '2023-05-04 10:54:00+00', false, '{"id": "evt_013Dispute", "object": "event", "type": "charge.dispute.created", "created": 1683194600, "livemode": false, "api_version": "2017-06-05", "data": {"object": {"id": "dp_013", "object": "dispute", "charge": "ch_013Refunded", "amount": 700, "status": "needs_response", "reason": "fraudulent"}}}', '');

--
-- Data for Name: auth_group; Type: TABLE DATA; Schema: public; Owner: -
--

--
-- Data for Name: auth_permission; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (1, 'Can add permission', 1, 'add_permission');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (2, 'Can change permission', 1, 'change_permission');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (3, 'Can delete permission', 1, 'delete_permission');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (4, 'Can view permission', 1, 'view_permission');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (5, 'Can add group', 2, 'add_group');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (6, 'Can change group', 2, 'change_group');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (7, 'Can delete group', 2, 'delete_group');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (8, 'Can view group', 2, 'view_group');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (9, 'Can add user', 3, 'add_user');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (10, 'Can change user', 3, 'change_user');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (11, 'Can delete user', 3, 'delete_user');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (12, 'Can view user', 3, 'view_user');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (13, 'Can add content type', 4, 'add_contenttype');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (14, 'Can change content type', 4, 'change_contenttype');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (15, 'Can delete content type', 4, 'delete_contenttype');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (16, 'Can view content type', 4, 'view_contenttype');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (17, 'Can add session', 5, 'add_session');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (18, 'Can change session', 5, 'change_session');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (19, 'Can delete session', 5, 'delete_session');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (20, 'Can view session', 5, 'view_session');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (21, 'Can add site', 6, 'add_site');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (22, 'Can change site', 6, 'change_site');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (23, 'Can delete site', 6, 'delete_site');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (24, 'Can view site', 6, 'view_site');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (25, 'Can add stripe charge', 7, 'add_stripecharge');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (26, 'Can change stripe charge', 7, 'change_stripecharge');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (27, 'Can delete stripe charge', 7, 'delete_stripecharge');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (28, 'Can view stripe charge', 7, 'view_stripecharge');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (29, 'Can add stripe customer', 8, 'add_stripecustomer');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (30, 'Can change stripe customer', 8, 'change_stripecustomer');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (31, 'Can delete stripe customer', 8, 'delete_stripecustomer');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (32, 'Can view stripe customer', 8, 'view_stripecustomer');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (33, 'Can add stripe subscription', 9, 'add_stripesubscription');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (34, 'Can change stripe subscription', 9, 'change_stripesubscription');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (35, 'Can delete stripe subscription', 9, 'delete_stripesubscription');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (36, 'Can view stripe subscription', 9, 'view_stripesubscription');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (37, 'Can add stripe subscription plan', 10, 'add_stripesubscriptionplan');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (38, 'Can change stripe subscription plan', 10, 'change_stripesubscriptionplan');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (39, 'Can delete stripe subscription plan', 10, 'delete_stripesubscriptionplan');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (40, 'Can view stripe subscription plan', 10, 'view_stripesubscriptionplan');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (41, 'Can add stripe webhook', 11, 'add_stripewebhook');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (42, 'Can change stripe webhook', 11, 'change_stripewebhook');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (43, 'Can delete stripe webhook', 11, 'delete_stripewebhook');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (44, 'Can view stripe webhook', 11, 'view_stripewebhook');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (45, 'Can add stripe coupon', 12, 'add_stripecoupon');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (46, 'Can change stripe coupon', 12, 'change_stripecoupon');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (47, 'Can delete stripe coupon', 12, 'delete_stripecoupon');
INSERT INTO public.auth_permission (id, name, content_type_id, codename) VALUES (48, 'Can view stripe coupon', 12, 'view_stripecoupon');

--
-- Data for Name: auth_group_permissions; Type: TABLE DATA; Schema: public; Owner: -
--

--
-- Data for Name: auth_user_groups; Type: TABLE DATA; Schema: public; Owner: -
--

--
-- Data for Name: auth_user_user_permissions; Type: TABLE DATA; Schema: public; Owner: -
--

--
-- Data for Name: django_migrations; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.django_migrations (id, app, name, applied) VALUES (1, 'contenttypes', '0001_initial', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (2, 'contenttypes', '0002_remove_content_type_name', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (3, 'auth', '0001_initial', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (4, 'aa_stripe', '0001_initial', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (5, 'aa_stripe', '0002_auto_20170607_0714', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (6, 'aa_stripe', '0003_auto_20170608_1103', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (7, 'aa_stripe', '0004_auto_20170613_0419', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (8, 'aa_stripe', '0005_auto_20170613_0614', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (9, 'aa_stripe', '0006_subscription_end_cancel', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (10, 'aa_stripe', '0007_auto_20170630_0557', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (11, 'aa_stripe', '0008_auto_20170630_0734', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (12, 'aa_stripe', '0009_auto_20170725_1205', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (13, 'aa_stripe', '0010_auto_20170822_1004', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (14, 'aa_stripe', '0011_auto_20170907_1201', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (15, 'aa_stripe', '0012_auto_20170908_1150', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (16, 'aa_stripe', '0013_stripesubscription_at_period_end', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (17, 'aa_stripe', '0014_stripecharge_charge_attempt_failed', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (18, 'aa_stripe', '0015_auto_20170925_0838', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (19, 'aa_stripe', '0016_stripecharge_is_refunded', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (20, 'aa_stripe', '0017_stripecharge_manual_charge', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (21, 'aa_stripe', '0018_stripecustomer_sources', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (22, 'aa_stripe', '0019_stripecustomer_default_source', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (23, 'aa_stripe', '0020_stripecharge_statement_descriptor', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (24, 'aa_stripe', '0021_auto_20190906_1623', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (25, 'aa_stripe', '0022_stripecharge_amount_refunded', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (26, 'auth', '0002_alter_permission_name_max_length', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (27, 'auth', '0003_alter_user_email_max_length', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (28, 'auth', '0004_alter_user_username_opts', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (29, 'auth', '0005_alter_user_last_login_null', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (30, 'auth', '0006_require_contenttypes_0002', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (31, 'auth', '0007_alter_validators_add_error_messages', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (32, 'auth', '0008_alter_user_username_max_length', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (33, 'auth', '0009_alter_user_last_name_max_length', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (34, 'auth', '0010_alter_group_name_max_length', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (35, 'auth', '0011_update_proxy_permissions', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (36, 'auth', '0012_alter_user_first_name_max_length', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (37, 'sessions', '0001_initial', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (38, 'sites', '0001_initial', '2023-05-03 10:00:00+00');
INSERT INTO public.django_migrations (id, app, name, applied) VALUES (39, 'sites', '0002_alter_domain_unique', '2023-05-03 10:00:00+00');

--
-- Data for Name: django_session; Type: TABLE DATA; Schema: public; Owner: -
--

--
-- Data for Name: django_site; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.django_site (id, domain, name) VALUES (1, 'example.com', 'example.com');

--
-- Name: aa_stripe_stripecharge_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.aa_stripe_stripecharge_id_seq', 4, true);

--
-- Name: aa_stripe_stripecoupon_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.aa_stripe_stripecoupon_id_seq', 3, true);

--
-- Name: aa_stripe_stripecustomer_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.aa_stripe_stripecustomer_id_seq', 3, true);

--
-- Name: aa_stripe_stripesubscription_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.aa_stripe_stripesubscription_id_seq', 2, true);

--
-- Name: aa_stripe_stripesubscriptionplan_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.aa_stripe_stripesubscriptionplan_id_seq', 2, true);

--
-- Name: auth_group_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.auth_group_id_seq', 1, false);

--
-- Name: auth_group_permissions_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.auth_group_permissions_id_seq', 1, false);

--
-- Name: auth_permission_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.auth_permission_id_seq', 48, true);

--
-- Name: auth_user_groups_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.auth_user_groups_id_seq', 1, false);

--
-- Name: auth_user_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.auth_user_id_seq', 3, true);

--
-- Name: auth_user_user_permissions_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.auth_user_user_permissions_id_seq', 1, false);

--
-- Name: django_content_type_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.django_content_type_id_seq', 12, true);

--
-- Name: django_migrations_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.django_migrations_id_seq', 39, true);

--
-- Name: django_site_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.django_site_id_seq', 1, true);

--
-- PostgreSQL database dump complete
--

