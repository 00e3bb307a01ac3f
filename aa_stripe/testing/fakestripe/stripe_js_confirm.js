// aa-stripe-graphql's fake Stripe: confirmCardPayment as Stripe's stripe.js answers it (MIT, our own
// code, appended at runtime to localstripe's stand-in; see stripe_js.py). Uses localstripe's
// LOCALSTRIPE_BASE_API and openModal, defined above in the same script.
(function () {
  const makeStripe = Stripe;

  async function call(method, url, body) {
    const response = await fetch(url, method === "GET" ? {method} : {method, body: JSON.stringify(body)});
    const answer = await response.json().catch(() => ({}));
    if (response.status !== 200 || answer.error) {
      return {error: answer.error || {message: `The fake Stripe answered ${response.status}.`}};
    }
    return {intent: answer};
  }

  // What stripe.js resolves with once the intent has settled.
  function outcome(intent) {
    if (intent.status === "requires_payment_method" && intent.last_payment_error) {
      return {error: {...intent.last_payment_error, payment_intent: intent}};
    }
    return {paymentIntent: intent};
  }

  Stripe = (apiKey, options) => {
    const stripe = makeStripe(apiKey, options);
    // As Stripe's: with a payment method, the intent is confirmed with it (a new attempt); without
    // one, an intent that waits for the customer's bank gets the bank's check, and one without a
    // payment method is an error. The dialog opens only when the intent then requires action.
    stripe.confirmCardPayment = async (clientSecret, data) => {
      console.log("fake stripe.js: confirmCardPayment()");
      const match = /^(pi_\w+)_secret_/.exec(clientSecret || "");
      if (!match) {
        return {error: {type: "invalid_request_error", message: "Invalid value for confirmCardPayment: clientSecret."}};
      }
      const base = `${LOCALSTRIPE_BASE_API}/v1/payment_intents/${match[1]}`;
      const method = data && data.payment_method;
      if (method !== undefined && typeof method !== "string") {
        return {error: {type: "invalid_request_error", message: "This stand-in takes a payment method id (pm_...) only."}};
      }
      const secret = encodeURIComponent(clientSecret);
      let step = await call("GET", `${base}?key=${encodeURIComponent(apiKey)}&client_secret=${secret}`);
      if (step.error) return step;
      let intent = step.intent;
      if (method || intent.status === "requires_confirmation") {
        const body = {key: apiKey, client_secret: clientSecret, ...(method ? {payment_method: method} : {})};
        step = await call("POST", `${base}/confirm`, body);
        if (step.error) return step;
        intent = step.intent;
      } else if (intent.status === "requires_payment_method") {
        return {error: {
          type: "invalid_request_error",
          code: "payment_intent_unexpected_state",
          message: "A payment method of type card was expected to be present, but this PaymentIntent does "
            + "not have a payment method and none was provided. Try again providing either the "
            + "payment_method or payment_method_data parameters.",
          payment_intent: intent,
        }};
      }
      if (intent.status !== "requires_action") return outcome(intent);
      const passed = await openModal("3D Secure\nDo you want to confirm or cancel?",
                                     "Complete authentication", "Fail authentication");
      step = await call("POST", `${base}/_authenticate?success=${passed}`, {key: apiKey, client_secret: clientSecret});
      if (step.error) return step;
      return outcome(step.intent);
    };
    stripe.handleCardPayment = (clientSecret, element, data) =>
      stripe.confirmCardPayment(clientSecret, data && data.payment_method ? {payment_method: data.payment_method} : undefined);
    return stripe;
  };
})();
