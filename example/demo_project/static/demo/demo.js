// The demo front-end: plain JavaScript against the GraphQL API at /graphql/ (nothing else of the
// server is called), with stripe.js for what only the browser may do: take the card's number and
// open the bank's check (3-D Secure). Every text that comes from the server is put in the page with
// textContent, never as HTML.
"use strict";

const stripe = Stripe(window.DEMO.publishableKey);
const card = stripe.elements().create("card");
card.mount("#card-element");
let defaultMethod = null; // Stripe id (pm_...) of the customer's default payment method, if any

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// POST a GraphQL request; top-level errors (not signed in, limits, ...) are thrown.
async function gql(query, variables = {}) {
  const response = await fetch(window.DEMO.graphqlUrl, {
    method: "POST",
    credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRFToken": csrfToken()},
    body: JSON.stringify({query, variables}),
  });
  let body;
  try {
    body = await response.json();
  } catch (err) {
    throw new Error(`The server answered ${response.status} without JSON.`);
  }
  if (body.errors && body.errors.length) {
    throw new Error(body.errors.map((e) => e.message).join(" "));
  }
  return body.data;
}

function show(kind, texts) {
  const box = document.getElementById("messages");
  box.replaceChildren(...texts.map((text) => {
    const p = document.createElement("p");
    p.className = kind;
    p.textContent = text;
    return p;
  }));
}

const showOk = (text) => show("ok", [text]);
const showInfo = (text) => show("info", [text]);
const showError = (text) => show("error", [text]);

function errorText(e) {
  return e.message + (e.declineCode ? ` (${e.declineCode})` : "") + ` [${e.code}${e.field ? ", " + e.field : ""}]`;
}

// A payload's `errors` (StripeError: field, message, code, declineCode) shown to the person.
function payloadFailed(payload) {
  if (!payload.errors.length) return false;
  show("error", payload.errors.map(errorText));
  return true;
}

// One idempotency key per user action, kept until the server has answered it: when an answer is lost
// (the network, a proxy's 502) and the person clicks again, the same request goes with the same key,
// and the server answers it once instead of charging or subscribing twice. The action's name says
// what it asks for (another input is another action, with a key of its own).
const pendingKeys = new Map();

async function mutate(action, query, variables) {
  if (!pendingKeys.has(action)) pendingKeys.set(action, crypto.randomUUID());
  const data = await gql(query, {...variables, key: pendingKeys.get(action)});  // throws: key kept
  pendingKeys.delete(action);  // answered (a payload, with or without errors)
  return data;
}

function money(amount, currency) {
  const format = new Intl.NumberFormat("en", {style: "currency", currency: currency.toUpperCase()});
  return format.format(amount / 10 ** format.resolvedOptions().maximumFractionDigits);
}

function item(text, ...extras) {
  const li = document.createElement("li");
  const span = document.createElement("span");
  span.textContent = text;
  li.append(span, ...extras);
  return li;
}

function link(label, href) {
  const a = document.createElement("a");
  a.textContent = label;
  a.href = href.startsWith("https://") ? href : "#";  // Stripe's pages only
  a.target = "_blank";
  a.rel = "noopener";
  return a;
}

// A button that is disabled while its action runs (no double submit) and shows what went wrong.
function button(label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", () => run(b, onClick));
  return b;
}

async function run(b, action) {
  b.disabled = true;
  try {
    await action();
  } catch (err) {
    showError(err.message);
  } finally {
    b.disabled = false;
  }
}

function fill(listId, items, empty) {
  document.getElementById(listId).replaceChildren(...(items.length ? items : [item(empty)]));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- 1. Cards: saved through a SetupIntent ----------------------------------------------------------
const METHOD_FIELDS = "id stripePaymentMethodId isDefault card { brand last4 expMonth expYear }";

// PaymentMethods say the brand as Stripe's code (visa, amex, ...); people read the name.
const BRANDS = {amex: "American Express", diners: "Diners Club", jcb: "JCB", mastercard: "Mastercard", unionpay: "UnionPay"};
const brandName = (brand) => BRANDS[brand] || brand.charAt(0).toUpperCase() + brand.slice(1);
const cardText = (c) => `${brandName(c.brand)} •••• ${c.last4}, expires ${c.expMonth}/${c.expYear}`;

async function loadCards() {
  const data = await gql(`{ stripeCustomers(isActive: true, first: 1) { edges { node {
      paymentMethods { ${METHOD_FIELDS} } defaultPaymentMethod { stripePaymentMethodId } } } } }`);
  const customer = data.stripeCustomers.edges.length ? data.stripeCustomers.edges[0].node : null;
  defaultMethod = customer && customer.defaultPaymentMethod ? customer.defaultPaymentMethod.stripePaymentMethodId : null;
  const methods = customer ? customer.paymentMethods.filter((m) => m.card) : [];
  fill("card-list", methods.map((m) => item(
    cardText(m.card) + (m.isDefault ? " (default)" : ""),
    ...(m.isDefault ? [] : [button("Make default", () => makeDefault(m))]),
    button("Remove", () => detach(m)),
  )), "No card yet.");
}

async function saveCard() {
  // 1. A SetupIntent for this customer (the library creates the Stripe customer the first time).
  const created = (await mutate("setup", `mutation($key: String) {
      createStripeSetupIntent(input: {idempotencyKey: $key}) {
        errors { field message code declineCode } setupIntent { stripeSetupIntentId clientSecret } } }`,
    {})).createStripeSetupIntent;
  if (payloadFailed(created)) return;
  const intent = created.setupIntent;
  // 2. stripe.js sends the card to Stripe (never to this server) and opens the bank's check if asked.
  let result;
  try {
    result = await stripe.confirmCardSetup(intent.clientSecret, {payment_method: {card}});
  } catch (err) {
    showError("Enter the card's number, expiry and CVC.");
    return;
  }
  if (result.error) {
    showError(`Card not saved: ${result.error.message || "stripe.js refused the card."}`);
    return;
  }
  // 3. The library mirrors the saved card now (the setup_intent.succeeded webhook would, later).
  const completed = (await gql(`mutation($id: String!) {
      completeStripeSetupIntent(input: {setupIntent: $id}) {
        errors { field message code declineCode } paymentMethod { ${METHOD_FIELDS} } } }`,
    {id: intent.stripeSetupIntentId})).completeStripeSetupIntent;
  if (payloadFailed(completed)) return;
  await loadCards();
  showOk(`Card saved: ${cardText(completed.paymentMethod.card)}.`);
}

async function makeDefault(method) {
  const payload = (await mutate(`default:${method.id}`, `mutation($id: ID!, $key: String) {
      setDefaultStripePaymentMethod(input: {paymentMethod: $id, idempotencyKey: $key}) {
        errors { field message code } paymentMethod { isDefault } } }`,
    {id: method.id})).setDefaultStripePaymentMethod;
  if (payloadFailed(payload)) return;
  await loadCards();
  showOk(`${cardText(method.card)} is your default card.`);
}

async function detach(method) {
  const payload = (await mutate(`detach:${method.id}`, `mutation($id: ID!, $key: String) {
      detachStripePaymentMethod(input: {paymentMethod: $id, idempotencyKey: $key}) {
        errors { field message code } } }`,
    {id: method.id})).detachStripePaymentMethod;
  if (payloadFailed(payload)) return;
  await loadCards();
  showOk(`${cardText(method.card)} removed.`);
}

// --- Paying on-session: stripe.js opens the bank's check ----------------------------------------------
// Resolves to null when paid, else to the reason stripe.js gives (authentication failed, declined).
// Without `paymentMethod` the payment is finished as it stands (the bank's check of the card it was
// attempted with); with one, it is attempted again with that card (after a failed check or a decline
// the payment has no card left).
async function confirmPayment(clientSecret, paymentMethod) {
  const result = await stripe.confirmCardPayment(clientSecret, paymentMethod ? {payment_method: paymentMethod} : undefined);
  if (result.error) return result.error.message || "The payment did not go through.";
  return result.paymentIntent.status === "succeeded" ? null : `The payment is ${result.paymentIntent.status}.`;
}

// --- 2. Subscribe to a price ----------------------------------------------------------------------
const priceName = (p) => (p.product ? p.product.name : p.nickname || "price");

function priceText(p) {
  const every = p.recurring ? ` every ${p.recurring.intervalCount > 1 ? p.recurring.intervalCount + " " : ""}${p.recurring.interval.toLowerCase()}` : "";
  return `${priceName(p)}: ${money(p.unitAmount, p.currency)}${every}`;
}

async function loadPrices() {
  const data = await gql(`{ stripePrices(first: 20) { edges { node {
      id nickname unitAmount currency recurring { interval intervalCount } product { name } } } } }`);
  const prices = data.stripePrices.edges.map(({node}) => node).filter((p) => p.recurring);
  fill("price-list", prices.map((p) => item(priceText(p), button("Subscribe", () => subscribe(p)))), "No prices at Stripe.");
}

async function subscribe(price) {
  const name = priceName(price);
  if (!defaultMethod) {
    showError(`${name}: save a card first (1. Your cards); it pays the first invoice.`);
    return;
  }
  const coupon = document.getElementById("coupon").value.trim() || null;
  const payload = (await mutate(`subscribe:${price.id}:${coupon}`, `mutation($price: ID!, $coupon: String, $key: String) {
      createStripeSubscription(input: {price: $price, coupon: $coupon, idempotencyKey: $key}) {
        errors { field message code declineCode } subscription { id status } clientSecret } }`,
    {price: price.id, coupon})).createStripeSubscription;
  const waiting = payload.subscription && payload.subscription.status === "INCOMPLETE" && payload.clientSecret;
  if (!waiting && payloadFailed(payload)) {
    await loadSubscriptions();
    return;
  }
  if (waiting) {
    // AUTHENTICATION_REQUIRED: the first invoice waits for the bank's check, in this page.
    showInfo(`${name}: your bank asks you to confirm the first payment.`);
    await finishFirstPayment(payload.subscription.id, name, payload.clientSecret, null);
    return;
  }
  showOk(`Subscribed to ${name} (${payload.subscription.status.toLowerCase()}).`);
  await Promise.all([loadSubscriptions(), loadInvoices()]);
}

async function finishFirstPayment(id, name, clientSecret, paymentMethod) {
  const failed = await confirmPayment(clientSecret, paymentMethod);
  if (failed) {
    showError(`${name}: first payment not completed. ${failed}`);
    await Promise.all([loadSubscriptions(), loadInvoices()]);
    return;
  }
  // Paid at Stripe; the subscription turns active here when its webhook (invoice.paid) is parsed.
  showInfo(`${name}: payment confirmed, waiting for Stripe's confirmation…`);
  const status = await waitWhileIncomplete(id);
  if (status === "INCOMPLETE") {
    showInfo(`${name}: paid; the subscription turns active as soon as Stripe's event arrives.`);
  } else {
    showOk(`Subscribed to ${name} (${status.toLowerCase()}).`);
  }
  await Promise.all([loadSubscriptions(), loadInvoices()]);
}

// The status as the webhook leaves it; after 10 s without it (no webhook reaches this host, e.g. Stripe
// test mode without `stripe listen`), the subscription is read from Stripe: asking the owner's
// clientSecret reads it and records what Stripe says.
async function waitWhileIncomplete(id) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const data = await gql(`query($id: ID!) { node(id: $id) { ... on StripeSubscription { status } } }`, {id});
    if (data.node.status !== "INCOMPLETE") return data.node.status;
    if (Date.now() > deadline) break;
    await sleep(500);
  }
  await gql(`query($id: ID!) { node(id: $id) { ... on StripeSubscription { clientSecret } } }`, {id});
  return (await gql(`query($id: ID!) { node(id: $id) { ... on StripeSubscription { status } } }`, {id})).node.status;
}

// --- 3. Subscriptions -------------------------------------------------------------------------------
const subscriptionName = (s) => (s.price ? priceName(s.price) : s.plan ? s.plan.name : "subscription");

async function loadSubscriptions() {
  const data = await gql(`{ stripeSubscriptions(first: 50) { edges { node {
      id status atPeriodEnd endDate price { nickname product { name } } plan { name }
      coupon { couponId } } } } }`);
  fill("subscription-list", data.stripeSubscriptions.edges.map(({node}) => {
    const name = subscriptionName(node);
    const status = (node.status || "pending").toLowerCase().replace("_", " ");
    const parts = [`${name}: ${node.status === "INCOMPLETE" ? "incomplete, waiting for your payment" : status}`];
    if (node.coupon) parts.push(`coupon ${node.coupon.couponId}`);
    if (node.atPeriodEnd) parts.push(`ends ${node.endDate || "at the end of the period"}`);
    const buttons = [];
    if (node.status === "INCOMPLETE") buttons.push(button("Complete payment", () => completePayment(node, name)));
    if (!["CANCELED", "INCOMPLETE_EXPIRED", "INCOMPLETE"].includes(node.status)) {
      if (!node.atPeriodEnd) buttons.push(button("Cancel at period end", () => cancel(node, name, true)));
      buttons.push(button("Cancel now", () => cancel(node, name, false)));
    }
    return item(parts.join(", "), ...buttons);
  }), "None yet.");
}

async function completePayment(subscription, name) {
  // The first invoice's confirmation secret, read from Stripe for the owner only.
  const data = await gql(`query($id: ID!) { node(id: $id) { ... on StripeSubscription { status clientSecret } } }`,
    {id: subscription.id});
  if (!data.node.clientSecret) {
    showInfo(`${name}: nothing to pay now (${data.node.status.toLowerCase()}).`);
    await loadSubscriptions();
    return;
  }
  // Attempted again with the default card: after a failed check the payment has no card left.
  await finishFirstPayment(subscription.id, name, data.node.clientSecret, defaultMethod);
}

async function cancel(subscription, name, atPeriodEnd) {
  const payload = (await mutate(`cancel:${subscription.id}:${atPeriodEnd}`, `mutation($id: ID!, $atPeriodEnd: Boolean, $key: String) {
      cancelStripeSubscription(input: {subscription: $id, atPeriodEnd: $atPeriodEnd, idempotencyKey: $key}) {
        errors { field message code } subscription { status atPeriodEnd } } }`,
    {id: subscription.id, atPeriodEnd})).cancelStripeSubscription;
  if (payloadFailed(payload)) return;
  showOk(atPeriodEnd ? `${name} ends at the end of the paid period.` : `${name} canceled.`);
  await loadSubscriptions();
}

// --- 4. Charges ---------------------------------------------------------------------------------------
const WAITING = ["REQUIRES_ACTION", "REQUIRES_PAYMENT_METHOD", "REQUIRES_CONFIRMATION", "FAILED"];
const REASONS = {
  authentication_required: "your bank asks you to confirm it",
  payment_intent_authentication_failure: "the bank's check failed",
  card_declined: "the card was declined",
};

function chargeState(c) {
  if (c.isRefunded) return "refunded";
  if (c.amountRefunded) return `partly refunded (${money(c.amountRefunded, c.currency)})`;
  if (c.status === "SUCCEEDED") return "paid";
  if (c.status === "PROCESSING") return "processing";
  if (c.status === "REQUIRES_ACTION") return "unpaid: your bank asks you to confirm it";
  if (WAITING.includes(c.status)) {
    const reason = REASONS[c.failureCode] || c.failureCode || "not paid";
    return `unpaid: ${reason}${c.declineCode ? ` (${c.declineCode})` : ""}`;
  }
  return c.status === "CANCELED" ? "canceled" : "not charged yet";
}

const CHARGE_FIELDS = "id amount currency description status isRefunded amountRefunded failureCode declineCode";

async function loadCharges() {
  const data = await gql(`{ stripeCharges(first: 20) { edges { node { ${CHARGE_FIELDS} } } } }`);
  fill("charge-list", data.stripeCharges.edges.map(({node}) => item(
    `${money(node.amount, node.currency)}: ${node.description || "charge"}, ${chargeState(node)}`,
    ...(WAITING.includes(node.status) ? [button("Pay", () => pay(node))] : []),
  )), "None yet.");
}

async function pay(charge) {
  const label = `${money(charge.amount, charge.currency)} (${charge.description || "charge"})`;
  // 1. The charge's PaymentIntent, made ready for this on-session payment; its secret to stripe.js.
  const payload = (await mutate(`pay:${charge.id}`, `mutation($id: ID!, $key: String) {
      payStripeCharge(input: {charge: $id, idempotencyKey: $key}) {
        errors { field message code declineCode } charge { status clientSecret paymentMethod } } }`,
    {id: charge.id})).payStripeCharge;
  if (payloadFailed(payload)) return;
  let failed = null;
  if (payload.charge.status !== "SUCCEEDED") {
    // 2. stripe.js opens the bank's check: of the waiting attempt, or of a new attempt with the card
    //    of the last one (declined off-session for want of authentication, or a failed check).
    const again = payload.charge.status === "REQUIRES_ACTION" ? null : payload.charge.paymentMethod;
    failed = await confirmPayment(payload.charge.clientSecret, again);
  }
  // 3. The outcome recorded now (payment_intent.* webhooks would, later).
  const refreshed = (await gql(`mutation($id: ID!) {
      refreshStripeCharge(input: {charge: $id}) { errors { field message code } charge { status } } }`,
    {id: charge.id})).refreshStripeCharge;
  await loadCharges();
  if (payloadFailed(refreshed)) return;
  if (refreshed.charge.status === "SUCCEEDED") showOk(`Paid ${label}.`);
  else showError(`${label} not paid: ${failed || refreshed.charge.status.toLowerCase()}`);
}

// --- 5. Invoices ------------------------------------------------------------------------------------
async function loadInvoices() {
  const data = await gql(`{ stripeInvoices(first: 20) { edges { node {
      number status amountDue amountPaid currency hostedInvoiceUrl invoicePdf } } } }`);
  fill("invoice-list", data.stripeInvoices.edges.map(({node}) => {
    const amount = node.status === "PAID" ? node.amountPaid : node.amountDue;
    const links = [];
    if (node.hostedInvoiceUrl) links.push(link("View", node.hostedInvoiceUrl));
    if (node.invoicePdf) links.push(link("PDF", node.invoicePdf));
    return item(`${node.number || "draft"}: ${money(amount, node.currency)}, ${(node.status || "").toLowerCase()}`, ...links);
  }), "None yet.");
}

// --- Staff: charge a customer -----------------------------------------------------------------------
async function createCharge() {
  const select = document.getElementById("charge-user");
  const amount = Number(document.getElementById("charge-amount").value);
  const description = document.getElementById("charge-description").value;
  const action = `charge:${select.value}:${amount}:${description}`;
  const payload = (await mutate(action, `mutation($user: ID!, $amount: Int!, $description: String!, $key: String) {
      createStripeCharge(input: {user: $user, amount: $amount, currency: "usd", description: $description,
                                 idempotencyKey: $key}) {
        errors { field message code declineCode } charge { amount currency status } } }`,
    {user: select.value, amount, description})).createStripeCharge;
  const who = select.options[select.selectedIndex].text;
  if (payload.charge && payload.errors.some((e) => e.code === "AUTHENTICATION_REQUIRED")) {
    showInfo(`Charged ${who} ${money(payload.charge.amount, payload.charge.currency)}: it waits for ${who} to confirm it with their bank.`);
    return;
  }
  if (payloadFailed(payload)) return;
  showOk(`Charged ${who} ${money(payload.charge.amount, payload.charge.currency)}: ${payload.charge.status.toLowerCase()}.`);
}

document.getElementById("save-card").addEventListener("click", (event) => run(event.target, saveCard));
const staffButton = document.getElementById("create-charge");
if (staffButton) staffButton.addEventListener("click", () => run(staffButton, createCharge));

Promise.all([loadCards(), loadPrices(), loadSubscriptions(), loadCharges(), loadInvoices()])
  .then(() => document.body.setAttribute("data-ready", "true"))
  .catch((err) => showError(err.message));
