"""Hand-written message fragments for the Kestrel Home demo support-ticket dataset.

Kestrel Home is a fictional smart-home company (cameras, doorbells, thermostats, a hub and a
companion app, plus a paid cloud plan). Everything in this module was written for this project.

Placeholders in curly braces (``{order}``, ``{product}``, ...) are filled in by ``generate.py``;
within one message a placeholder always gets the same value.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Intent:
    """One reason for contacting support, with hand-written ways of saying it."""

    name: str
    weight: float
    cores: tuple[str, ...]
    shorts: tuple[str, ...]
    details: tuple[str, ...]
    positive: bool = False  # praise: never written angrily
    complaint: bool = True  # False for questions/requests that don't suit an angry rant


LABELS: tuple[str, ...] = (
    "billing",
    "technical_support",
    "account_access",
    "shipping",
    "product_feedback",
    "security_privacy",
)

CHANNELS: tuple[str, ...] = ("email", "chat", "web_form", "app_review", "phone_transcript")

# --------------------------------------------------------------------------------------------
# Intents per label
# --------------------------------------------------------------------------------------------

BILLING: tuple[Intent, ...] = (
    Intent(
        name="double_charge",
        weight=1.0,
        cores=(
            "I was charged twice for my {plan} subscription this month.",
            "There are two identical charges of {amount} on my card from {date}.",
            "You took {amount} out of my account twice for the same order.",
            "My bank statement shows a duplicate payment to Kestrel for {amount}.",
            "Why have I been billed twice? I only have one subscription.",
            "I can see two payments for order {order}, one on {date} and another the next morning.",
            "Just noticed my card got hit with the same charge twice, {amount} each time.",
            "The renewal went through two times and I only have one {plan} plan.",
            "Checkout froze so I pressed pay again, and now I've paid {amount} twice for one "
            "order.",
            "I've been charged double for the {product}.",
            "Looks like the monthly payment was taken twice on {date}.",
            "Both my PayPal and my card were charged for the same order {order}.",
        ),
        shorts=(
            "charged twice",
            "double charge on my card",
            "why 2 payments??",
            "duplicate charge of {amount}",
            "billed twice this month",
            "you charged me twice",
            "charged 2x for {order}",
        ),
        details=(
            "I only placed one order.",
            "My bank says it isn't a pending authorisation, the money has actually gone.",
            "Both charges have the exact same reference.",
            "I have a screenshot of the statement if that helps.",
            "This has pushed me into my overdraft.",
            "It's the card ending in {last4}.",
            "Please refund the second payment as soon as possible.",
            "I've only got one device registered, so there's no reason for two charges.",
        ),
    ),
    Intent(
        name="refund",
        weight=1.3,
        cores=(
            "I returned the {product} on {date} and still haven't seen my refund.",
            "Can I get a refund for order {order}? I cancelled within the 30 days.",
            "You said the refund was processed {days} days ago but nothing has shown up on my "
            "card.",
            "I'd like my money back for the {product}, it just isn't what I needed.",
            "The return was marked as received but I only got {amount} back, not the {amount2} "
            "I paid.",
            "When will I get the money back for my cancelled order?",
            "One of your agents promised me a refund last week and it still hasn't arrived.",
            "How long do refunds usually take to go back to PayPal? I sent the {product} back on "
            "{date}.",
            "My refund was sent to a card I cancelled. What happens to the money now?",
            "I sent the {product} back over a month ago, where is my refund?",
            "Your email says refund issued but my bank says nothing is coming.",
        ),
        shorts=(
            "where is my refund",
            "refund pls",
            "still no refund for {order}",
            "need a refund",
            "refund status?",
            "i want my money back",
            "refund not received",
        ),
        details=(
            "The return tracking shows it was delivered to your warehouse on {date}.",
            "I've been waiting over {weeks} weeks now.",
            "The email said 5 to 7 business days and it has been longer than that.",
            "I paid with {card}.",
            "I kept the receipt and the original box.",
            "I was told I'd get a full refund, not a partial one.",
            "I used the prepaid return label you sent.",
            "My bank told me to contact you first before they open a dispute.",
        ),
    ),
    Intent(
        name="unexpected_charge",
        weight=1.3,
        cores=(
            "I cancelled my {plan} subscription last month but you charged me again on {date}.",
            "Why was I charged a {amount} cancellation fee? Nobody mentioned that when I signed "
            "up.",
            "My free trial was supposed to end without charging me, but I got billed {amount}.",
            "There's a charge of {amount} from Kestrel on my statement and I have no idea what "
            "it's for.",
            "The price of {plan} went up and I never got any warning about it.",
            "I downgraded to the basic plan but I'm still paying the full {plan} price.",
            "I was told there was no early termination fee, and now there is one on my bill.",
            "You are still charging me every month for a {product} I sent back ages ago.",
            "I was charged for {plan} even though I never signed up for it.",
            "My plan renewed for a whole year at {amount} without a reminder email.",
            "Please refund the annual renewal, I forgot to cancel before it went through and "
            "haven't used it since.",
        ),
        shorts=(
            "stop charging me",
            "what is this {amount} charge",
            "unexpected charge",
            "why was i charged",
            "charged after cancelling",
        ),
        details=(
            "I never agreed to an annual contract.",
            "This is the third month in a row this has happened.",
            "I'd like the charge reversed please.",
            "I only signed up to try it for the one month.",
            "I've been a paying customer for years and never had this problem.",
            "Nobody warned me this would happen.",
        ),
    ),
    Intent(
        name="cancel_subscription",
        weight=0.8,
        complaint=False,
        cores=(
            "I want to cancel my subscription and make sure I'm not charged for next month.",
            "How do I turn off auto renewal? I don't want another {amount} taken.",
            "Please cancel my {plan} plan at the end of this billing period.",
            "Is there a fee if I cancel the annual plan early?",
            "Can I pause my subscription for a couple of months instead of cancelling?",
            "I'd like to downgrade from {plan} to the free plan from next month.",
            "I can't see a cancel button anywhere, how do I stop the monthly payments?",
            "We're moving abroad so please cancel the subscription and any future payments.",
        ),
        shorts=(
            "cancel my subscription",
            "cancel my {plan} plan",
            "cancel sub pls",
            "turn off auto renew",
            "how do i cancel",
        ),
        details=(
            "I'd like written confirmation that no more payments will be taken.",
            "The renewal date is {date}.",
            "We just don't use the cloud recordings enough to justify it.",
        ),
    ),
    Intent(
        name="invoice",
        weight=0.7,
        cores=(
            "Could you send me a VAT invoice for order {order}? I need it for my expenses.",
            "The invoice from {date} has the wrong company name on it.",
            "I need a receipt for my {plan} renewal and I can't find it anywhere.",
            "Can you reissue the invoice with our business address and VAT number on it?",
            "Where can I download past invoices? Our accountant needs the last twelve months.",
            "The invoice total doesn't match what was actually taken from my card.",
            "Our finance team needs a proper invoice, the order confirmation email isn't enough.",
            "Is it possible to get one invoice for all {n} devices we ordered?",
            "My invoices keep going to my old work email, can you send them to me directly?",
            "The invoice shows tax charged twice, once on the device and once on the delivery.",
        ),
        shorts=(
            "need invoice for {order}",
            "receipt please",
            "vat invoice?",
            "invoice is wrong",
            "send me the invoice",
            "copy of invoice for {date}",
        ),
        details=(
            "The company name should be {company}.",
            "I need it before the end of the month for our tax return.",
            "A PDF is fine.",
            "We're a small business so we need this for our books.",
            "It's for an expense claim so it has to show the VAT separately.",
        ),
    ),
    Intent(
        name="payment_method",
        weight=1.0,
        cores=(
            "My card was declined at checkout but there's definitely money on it.",
            "How do I update the card on my subscription? The old one has expired.",
            "I'd like to switch from PayPal to a credit card for the monthly payments.",
            "My payment keeps failing and now it says my {plan} will be suspended.",
            "Do you take Apple Pay? I can't see it as an option anywhere.",
            "My bank shows the payment went through but your site says it failed.",
            "Is there a way to pay for the {product} in instalments?",
            "I tried three different cards and all of them were rejected.",
            "Please remove my old card from the account, I don't want it stored anymore.",
            "My gift card balance isn't being applied at checkout.",
            "The direct debit failed this month because I changed banks. How do I set up the "
            "new one?",
            "I keep getting emails saying my payment couldn't be processed.",
        ),
        shorts=(
            "card declined",
            "update payment method",
            "payment failed",
            "cant pay",
            "change my card",
            "payment not going through",
            "how do i change card",
        ),
        details=(
            "The card is {card}.",
            "I'd rather sort this out before the next payment is due.",
            "I don't want to lose my recordings over a payment problem.",
            "I couldn't find anything about it in the FAQ.",
        ),
    ),
    Intent(
        name="pricing",
        weight=0.7,
        cores=(
            "The discount code {promo} didn't apply and I ended up paying full price.",
            "I bought the {product} and a week later it went on sale for {amount} less. Can I "
            "get the difference back?",
            "I was supposed to get the student discount but it's not showing on my bill.",
            "The price at checkout was higher than what the product page said.",
            "I was charged {amount} for delivery even though my order was over the free "
            "shipping limit.",
            "My loyalty credit wasn't taken off my last order.",
            "Can you honour the Black Friday price? The code expired while I was still checking "
            "out.",
            "The bundle was advertised at {amount} but I was charged for each item separately.",
            "Your website said the first month of {plan} was free but I was charged straight away.",
            "I referred two friends and never got the account credit I was promised.",
        ),
        shorts=(
            "promo code not working",
            "price match?",
            "discount missing",
            "charged the wrong price",
            "code {promo} doesnt work",
        ),
        details=(
            "I have screenshots if you need them.",
            "The code was in your own newsletter.",
            "It's only a few pounds but it's the principle.",
            "Other shops would just sort this out.",
        ),
    ),
)

TECHNICAL_SUPPORT: tuple[Intent, ...] = (
    Intent(
        name="app_crash",
        weight=1.3,
        cores=(
            "The Kestrel app crashes as soon as I open it on my {device}.",
            "Since updating to version {version}, the app closes itself whenever I tap on the "
            "camera feed.",
            "Every time I try to add a new device the app freezes and then shuts down.",
            "The app keeps crashing on startup. I've reinstalled it twice already.",
            "After the latest update the app just shows a white screen and then crashes.",
            "It crashes when I open the settings page, every single time.",
            "The Android app force closes when I try to watch recordings from {date}.",
            "I get a spinning wheel for ages and then the app just quits.",
            "The app crashes whenever I try to change the motion zones.",
            "Opening a notification crashes the app instead of showing the clip.",
            "The app freezes completely if I switch between cameras too quickly.",
            "The iPad version crashes when I rotate the screen.",
        ),
        shorts=(
            "app keeps crashing",
            "app crash on {device}",
            "app wont open",
            "crashes on launch",
            "app freezing",
            "app crashes every time",
            "app closes by itself",
        ),
        details=(
            "I'm on a {device} with the latest software.",
            "I already tried clearing the cache and reinstalling.",
            "It was working fine before the update.",
            "Restarting the phone didn't help.",
            "My partner's phone has exactly the same problem.",
            "I'm on version {version} of the app.",
            "I can send a screen recording if that helps.",
            "It happens on wifi and on mobile data.",
        ),
    ),
    Intent(
        name="connectivity",
        weight=1.3,
        cores=(
            "My {product} keeps going offline even though the wifi is fine.",
            "I can't get the {product} to connect to my network during setup.",
            "The hub has a flashing red light and won't pair with anything.",
            "The {product} disconnects every night around 2am and I have to unplug it to get it "
            "back.",
            "Setup gets stuck on 'searching for device' and then times out.",
            "It won't connect to my 5GHz network, only the 2.4 one.",
            "The camera shows as offline in the app but the light on it is solid green.",
            "After I changed my router none of my devices will reconnect.",
            "The {product} keeps dropping off the network several times a day.",
            "Bluetooth pairing fails at the last step every time.",
            "The smart lock says 'out of range' even though the hub is in the next room.",
            "The QR code scan during setup never works.",
        ),
        shorts=(
            "device offline",
            "{product} not connecting",
            "cant pair {product}",
            "setup stuck",
            "keeps disconnecting",
            "{product} offline again",
            "wont connect to wifi",
        ),
        details=(
            "The router is only a few metres away.",
            "Everything else on the same wifi works fine.",
            "I've factory reset it twice.",
            "The app says the firmware is up to date.",
            "I've tried moving it closer to the router.",
            "It was fine for the first few weeks.",
            "We've got a mesh network, not sure if that matters.",
        ),
    ),
    Intent(
        name="error_bug",
        weight=1.2,
        cores=(
            "I keep getting error {error} when I try to save a schedule.",
            "The app says 'something went wrong, please try again later' whenever I open the "
            "history tab.",
            "Notifications arrive about ten minutes late, which makes the doorbell pretty "
            "pointless.",
            "The temperature in the app is completely different from what the thermostat shows.",
            "Motion alerts stopped working after the last update.",
            "Live view is just a black screen but I can hear sound.",
            "The web dashboard gives me error {error} when I try to download a clip.",
            "Automations run an hour late ever since the clocks changed.",
            "It says 'device not supported' for the {product} even though it's your own product.",
            "The doorbell rings in the app but the chime inside the house doesn't.",
            "Two-way talk doesn't work, the person at the door can't hear me.",
            "The geofencing keeps thinking I'm away when I'm sitting at home.",
        ),
        shorts=(
            "error {error}",
            "getting an error",
            "bug in the app",
            "notifications not working",
            "live view black screen",
            "error {error} again",
            "motion alerts broken",
        ),
        details=(
            "I've attached a screenshot.",
            "It only started happening this week.",
            "Turning it off and on again makes no difference.",
            "Nothing in the help centre covers this.",
            "I've already restarted the hub twice.",
            "It happens with both of our cameras.",
        ),
    ),
    Intent(
        name="sync",
        weight=0.8,
        cores=(
            "My recordings aren't syncing to the cloud anymore.",
            "Changes I make on the web dashboard don't show up in the app.",
            "My phone and my tablet show different schedules, they're not syncing.",
            "Clips from the last {days} days are missing from the timeline.",
            "All my routines disappeared after I signed in on a new phone.",
            "The sensor readings stopped updating a few days ago.",
            "Recordings upload to the cloud hours later instead of straight away.",
            "The event history only shows the first few clips and then nothing.",
        ),
        shorts=(
            "not syncing",
            "sync broken",
            "recordings missing",
            "data not updating",
            "cloud clips missing",
        ),
        details=(
            "I pay for cloud storage so I really need the recordings.",
            "It's been like this since {date}.",
            "Logging out and back in didn't fix it.",
            "The clips are still on the SD card, just not in the app.",
        ),
    ),
    Intent(
        name="performance",
        weight=0.8,
        cores=(
            "The app is painfully slow, it takes about 30 seconds to load the camera feed.",
            "The doorbell battery drains in two days when it's meant to last months.",
            "Since the update my phone heats up and the app eats the battery.",
            "Video keeps buffering even though my internet is fast.",
            "The dashboard takes forever to load and sometimes just times out.",
            "It takes about 20 seconds for the lights to respond to anything I do in the app.",
            "The video quality has dropped massively, everything is blurry now.",
            "The app uses over 2GB of storage on my phone, is that normal?",
            "Scrolling through recordings is really laggy.",
        ),
        shorts=(
            "app very slow",
            "battery draining",
            "so laggy",
            "video buffering",
            "slow to load",
            "battery dead again",
        ),
        details=(
            "It only started after the last update.",
            "It used to be fine.",
            "I've already tried reinstalling.",
        ),
    ),
    Intent(
        name="how_to",
        weight=0.7,
        complaint=False,
        cores=(
            "How do I connect the {product} to Google Home?",
            "Does the {product} work with Alexa? I can't find the skill.",
            "Is there a way to reset the hub without losing all my automations?",
            "How do I update the firmware manually?",
            "Will the thermostat work with a two wire heating system?",
            "Can I use the {product} without the hub?",
            "How do I move my cameras over to a new hub?",
            "What's the right way to mount the {product} on a brick wall?",
            "Is there a way to view the cameras on my laptop?",
            "How do I set the thermostat to eco mode?",
        ),
        shorts=(
            "how to reset {product}",
            "works with alexa?",
            "firmware update how",
            "how do i set up the {product}",
            "does it work with google home",
        ),
        details=(
            "The manual doesn't explain it.",
            "I'm not very technical so step by step would be great.",
            "I've looked on YouTube but the videos are all for the old model.",
        ),
    ),
)

ACCOUNT_ACCESS: tuple[Intent, ...] = (
    Intent(
        name="login",
        weight=1.4,
        cores=(
            "I can't log in to my account, it keeps saying my password is incorrect.",
            "Every time I try to sign in I just end up back on the login page.",
            "My login stopped working today and I haven't changed anything.",
            "It says no account was found with this email, but I've had an account for years.",
            "I can log in on the website but not in the app.",
            "The app keeps logging me out every few minutes and I have to sign in again.",
            "Sign in with Apple doesn't work anymore, it just goes round in a loop.",
            "I press the log in button and nothing happens.",
            "I get 'invalid credentials' even right after resetting my password.",
            "I can't remember which email I used to sign up.",
            "My husband set the account up and now neither of us can get in.",
            "After the update it asks me to log in again but won't accept my details.",
        ),
        shorts=(
            "cant log in",
            "login not working",
            "can't sign in",
            "locked out of my account",
            "wont let me login",
            "login broken",
            "cant get into my account",
        ),
        details=(
            "I've double checked the email address.",
            "Caps lock is definitely off.",
            "I've tried on my laptop and on my phone.",
            "I need to get in today to check the cameras.",
            "I use a password manager so it's not a typo.",
            "I haven't been able to get in since {date}.",
        ),
    ),
    Intent(
        name="password_reset",
        weight=1.1,
        cores=(
            "The password reset email never arrives. I've checked spam as well.",
            "I reset my password and the new one doesn't work either.",
            "The reset link says it's expired as soon as I click it.",
            "I forgot my password and the reset page says my email isn't registered.",
            "How do I change my password? I can't find the option anywhere in settings.",
            "I've requested a password reset five times now and got nothing.",
            "The reset page won't accept my new password, it says it doesn't meet the "
            "requirements but doesn't say which ones.",
            "The reset email went to an address I don't use anymore.",
            "I clicked reset password and it logged me out of all my devices.",
            "Can you send me a link to reset my password manually?",
        ),
        shorts=(
            "reset password",
            "password reset not working",
            "no reset email",
            "forgot password",
            "reset link expired",
            "new password not working",
        ),
        details=(
            "I've checked junk and spam.",
            "I've tried with two different browsers.",
            "The email address is the one I always use.",
        ),
    ),
    Intent(
        name="two_factor",
        weight=1.0,
        cores=(
            "I'm not getting the verification code by text.",
            "I got a new phone and now I can't get my two-factor codes.",
            "The code from my authenticator app is always rejected as invalid.",
            "I lost my phone and can't complete the two-step verification. How do I get back in?",
            "The SMS code arrives after it has already expired.",
            "I'd like to turn off two-factor authentication, it's causing more trouble than it's "
            "worth.",
            "None of my backup codes work.",
            "The verification email with the login code takes about an hour to arrive.",
            "I changed my phone number and the codes still go to the old one.",
            "I'm abroad and the text messages with the code don't come through.",
        ),
        shorts=(
            "no 2fa code",
            "verification code not arriving",
            "2fa not working",
            "lost phone cant do 2fa",
            "code not received",
            "sms code expired",
        ),
        details=(
            "I don't have the old phone anymore.",
            "I've tried the resend option loads of times.",
            "I've followed the help article and it didn't help.",
        ),
    ),
    Intent(
        name="locked",
        weight=0.8,
        cores=(
            "My account got locked after too many attempts, can you unlock it please?",
            "It says my account is temporarily suspended. Why?",
            "I'm locked out and the message just says to contact support.",
            "My account has been disabled and I have no idea what I did.",
            "How long does the lock last? It's been more than 24 hours.",
            "I typed the wrong password a few times and now I'm locked out for good apparently.",
            "The app says my account is under review and I can't access anything.",
            "Please unlock my account, I need to see who's at the door.",
        ),
        shorts=(
            "account locked",
            "unlock my account",
            "account suspended??",
            "locked out",
            "account disabled",
        ),
        details=(
            "I really need access back today.",
            "I haven't done anything unusual.",
        ),
    ),
    Intent(
        name="email_change",
        weight=0.9,
        cores=(
            "I need to change the email on my account because I can't get into the old one "
            "anymore.",
            "How do I update my email address? The field is greyed out.",
            "I accidentally made two accounts and want to merge them into one.",
            "I changed my email but it still asks me to log in with the old one.",
            "Can I transfer the account to my wife? I'm moving out.",
            "I need to add my son as a user but the invite link doesn't work.",
            "My username still shows my maiden name, how do I change it?",
            "We sold the house, how do I hand the account over to the new owners?",
            "I want to remove my ex as a user on the account.",
            "The shared access invite I sent my mum says it's invalid.",
        ),
        shorts=(
            "change email",
            "update my email address",
            "merge accounts",
            "transfer account",
            "add a user",
            "remove user from account",
        ),
        details=(
            "I'm the account owner.",
            "I can prove it's my account if needed.",
            "I couldn't find the option anywhere in settings.",
        ),
    ),
)

SHIPPING: tuple[Intent, ...] = (
    Intent(
        name="delay",
        weight=1.5,
        cores=(
            "My order {order} was supposed to arrive on {date} and it's still not here.",
            "Where is my order? It's been {days} days since I placed it.",
            "The estimated delivery date keeps getting pushed back.",
            "I ordered the {product} as a birthday present and now it's going to be late.",
            "Tracking hasn't moved since it left the warehouse {days} days ago.",
            "The order says shipped but the courier says they haven't received it yet.",
            "I paid for next day delivery and it's been three days.",
            "Your site said it would be dispatched within 24 hours, it's been a week.",
            "My order is still showing as processing after {days} days.",
            "Can you tell me when my {product} will actually be delivered?",
            "I was out when they tried to deliver and now I don't know where it's gone.",
            "The delivery window was today between 9 and 1 and nobody came.",
        ),
        shorts=(
            "where is my order",
            "order {order} not arrived",
            "delivery late",
            "still waiting for my package",
            "when will it arrive",
            "order not here",
            "wheres my parcel",
        ),
        details=(
            "I need it before {date} if possible.",
            "I've been in all day waiting for it.",
            "The order number is {order}.",
            "Nobody has emailed me to explain the delay.",
            "I live in a flat so they might have left it with a neighbour, but there was no card.",
            "I really needed it this week.",
        ),
    ),
    Intent(
        name="tracking",
        weight=1.0,
        cores=(
            "The tracking number you sent me doesn't work on the {carrier} website.",
            "I never received a tracking number for order {order}.",
            "Tracking says delivered but nothing has arrived.",
            "The tracking link just says 'label created' and hasn't changed.",
            "Which courier is delivering my order? The email doesn't say.",
            "The tracking shows my parcel went to a completely different city.",
            "{carrier} says the parcel was left in a safe place but it isn't anywhere.",
            "The tracking page says 'exception' with no explanation.",
        ),
        shorts=(
            "tracking not working",
            "no tracking number",
            "tracking says delivered but no parcel",
            "tracking not updating",
            "which courier",
        ),
        details=(
            "I've checked with the neighbours.",
            "There's no photo of the delivery.",
            "I've checked the bins and the porch.",
        ),
    ),
    Intent(
        name="address",
        weight=0.8,
        cores=(
            "I entered the wrong address, can I change it before it ships?",
            "My parcel was sent to my old address even though I updated it.",
            "I need to redirect my delivery to my work address.",
            "The postcode on my order is wrong, it's missing a digit.",
            "Can I collect the parcel from a pickup point instead?",
            "The delivery address on the confirmation is missing my flat number.",
            "I'm moving on {date}, can you hold the order until then?",
            "Can you ship it to my parents' address instead? I won't be home.",
        ),
        shorts=(
            "change delivery address",
            "wrong address on order",
            "redirect parcel",
            "update shipping address",
            "wrong postcode",
        ),
        details=(
            "It hasn't been dispatched yet according to the email.",
            "The correct address is the one on my account.",
        ),
    ),
    Intent(
        name="damaged_wrong",
        weight=1.1,
        cores=(
            "The {product} arrived with a cracked case.",
            "The box was crushed and the {product} inside is broken.",
            "I ordered the {product} but you sent me a {product2} instead.",
            "My parcel arrived ripped open and some of the items are missing.",
            "Only part of my order came, the {product} wasn't in the box.",
            "The package was soaking wet when it arrived and the device inside won't turn on.",
            "The mounting bracket was missing from the box.",
            "The box looks like it's been opened and resealed, the seal is broken.",
            "I received someone else's order with their name on it.",
            "The parcel that arrived has the wrong colour, I ordered white.",
        ),
        shorts=(
            "item arrived damaged",
            "wrong item sent",
            "missing item",
            "box damaged",
            "parcel arrived broken",
            "got the wrong product",
        ),
        details=(
            "I have photos if you need them.",
            "I'd like a replacement sent out, not a refund.",
            "I've kept all the packaging.",
            "How do I send it back?",
        ),
    ),
    Intent(
        name="lost",
        weight=0.8,
        cores=(
            "The courier says my parcel is lost. What happens now?",
            "My package has been 'in transit' for {weeks} weeks, I'm pretty sure it's lost.",
            "The driver left it on the doorstep and it's been stolen.",
            "It was signed for by someone I've never heard of.",
            "The parcel was returned to sender and I didn't even know it had been sent.",
            "{carrier} say they've lost it and I should contact you.",
            "My order vanished somewhere between the depot and my house.",
            "It's been {weeks} weeks and no sign of it, can you send a new one?",
        ),
        shorts=(
            "package lost",
            "parcel missing",
            "order never arrived",
            "lost parcel",
            "never got my order",
        ),
        details=(
            "I've already waited the 10 days the courier asked for.",
            "This was meant to be a gift.",
        ),
    ),
    Intent(
        name="delivery_options",
        weight=0.5,
        complaint=False,
        cores=(
            "Do you ship to Ireland?",
            "I've been asked to pay customs charges before they'll deliver, is that right?",
            "Can I choose a delivery time slot?",
            "Is there express shipping to {city}?",
            "Can the courier leave it in the shed if I'm not in?",
            "Do you deliver on Saturdays?",
            "Can I combine my two orders into one delivery?",
            "How much is delivery to the Channel Islands?",
        ),
        shorts=(
            "do you ship abroad",
            "delivery on saturday?",
            "express delivery?",
            "delivery cost?",
        ),
        details=(
            "I work long hours so I'm never in during the day.",
            "The site doesn't say either way.",
        ),
    ),
)

PRODUCT_FEEDBACK: tuple[Intent, ...] = (
    Intent(
        name="feature_request",
        weight=1.3,
        complaint=False,
        cores=(
            "It would be great if the app had a dark mode.",
            "Please add an option to export recordings in bulk.",
            "Could you make it possible to give guests temporary access to a camera?",
            "I'd love to see a home screen widget for the thermostat.",
            "Any plans to support Apple HomeKit? It's the only thing stopping me buying more of "
            "your stuff.",
            "It would be nice to set different schedules for weekdays and weekends.",
            "Please let us rename the motion zones, 'Zone 1' and 'Zone 2' isn't very helpful.",
            "Can you add a way to snooze notifications for an hour without turning them all off?",
            "I wish the doorbell could play a custom message when I'm away.",
            "An Apple Watch app would be really handy.",
            "Would be great if we could see the temperature history for more than a week.",
            "Please add support for more than one home in the same account.",
        ),
        shorts=(
            "please add dark mode",
            "feature request: widgets",
            "need homekit support",
            "add bulk export pls",
            "want a watch app",
            "bring back the old timeline",
        ),
        details=(
            "Most other apps have this already.",
            "I think a lot of people would use it.",
            "It's a small thing but it would make a big difference.",
            "Happy to beta test if you need volunteers.",
            "Otherwise the product is great.",
            "Just a suggestion for a future update.",
            "Would happily pay a bit more for that feature.",
        ),
    ),
    Intent(
        name="praise",
        weight=0.9,
        positive=True,
        cores=(
            "Just wanted to say the new {product} is brilliant, setup took five minutes.",
            "Your app is the best smart home app I've used, well done.",
            "Really impressed with the night vision on the camera.",
            "Loving the thermostat, our heating bill has already gone down.",
            "Works exactly as advertised, really happy with it.",
            "The latest update made everything so much faster, thank you.",
            "Had the {product} for a year now and it's never let me down.",
            "Whoever designed the setup process deserves a raise.",
            "The person I spoke to on chat yesterday was really helpful, please pass on my thanks.",
            "Just want to say thanks, the doorbell caught someone trying our car door last night.",
        ),
        shorts=(
            "love it",
            "great product",
            "works perfectly, thanks",
            "brilliant app",
            "really happy with it",
            "best purchase this year",
        ),
        details=(
            "Keep up the good work.",
            "I've already recommended it to my neighbours.",
            "Will definitely be buying more.",
            "Honestly one of the best things we've bought for the house.",
            "Just wanted to pass on some positive feedback for once.",
        ),
    ),
    Intent(
        name="design_complaint",
        weight=1.1,
        cores=(
            "The new app layout is confusing, I can't find anything anymore.",
            "Why did you move the cameras tab? It used to be one tap and now it's three.",
            "The font in the latest version is tiny and hard to read.",
            "The {product} looks a lot cheaper in person than in the pictures.",
            "The status light on the {product} is way too bright at night.",
            "I'm getting constant pop-ups asking me to upgrade to {plan}, it's really annoying.",
            "The packaging was massive for such a small device, what a waste of cardboard.",
            "The new icons all look the same, I keep tapping the wrong thing.",
            "Removing the timeline scrubber was a terrible decision.",
            "The white plastic has already started to yellow after a few months outside.",
            "The app used to be simple, now it's full of features nobody asked for.",
            "The chime sound on the doorbell is really irritating and you can't change it.",
        ),
        shorts=(
            "new layout is awful",
            "bring back the old design",
            "too many upgrade popups",
            "hate the new update",
            "ugly redesign",
        ),
        details=(
            "I've used your products for years and this is a step backwards.",
            "My parents can't use the app anymore because of the changes.",
            "Please reconsider.",
            "Not a bug, just a really poor choice.",
            "Just some honest feedback.",
            "I'm sure I'm not the only one who feels this way.",
        ),
    ),
    Intent(
        name="suggestion",
        weight=0.7,
        complaint=False,
        cores=(
            "Suggestion: let people pick a different alert sound for each device.",
            "You should offer a cheaper plan with just seven days of history.",
            "The wiring guide in the manual could really do with better diagrams.",
            "It would help if the app explained what each light colour means.",
            "Maybe add a short tutorial the first time you open the app.",
            "Consider offering a recycling scheme for old devices.",
            "It'd be nice if the outdoor camera came in black as well as white.",
            "Could the app remember which camera I was last looking at?",
        ),
        shorts=(
            "suggestion for the app",
            "idea for improvement",
            "small suggestion",
        ),
        details=(
            "Just a thought.",
            "Not urgent at all.",
            "Just some feedback from a long time user.",
            "Feel free to pass it on to the product team.",
        ),
    ),
)

SECURITY_PRIVACY: tuple[Intent, ...] = (
    Intent(
        name="suspicious_activity",
        weight=1.3,
        cores=(
            "I got an email saying someone logged into my account from {city}, and that wasn't me.",
            "Someone changed my password and email address without my permission.",
            "There are cameras on my account that I didn't add.",
            "I think my account has been hacked, all my settings were changed overnight.",
            "The light on my camera came on while nobody at home was using the app, is someone "
            "watching?",
            "I got a login alert at 3am from a device I don't own.",
            "There's an unknown user in my shared access list that I never invited.",
            "My smart lock was unlocked at 2am according to the history and none of us did it.",
            "Someone placed an order on my account with my saved card and had it sent to another "
            "address.",
            "I keep getting password reset emails that I didn't request.",
        ),
        shorts=(
            "account hacked",
            "suspicious login",
            "someone accessed my account",
            "unknown device on my account",
            "i think im hacked",
            "hacked account, need help",
            "suspicious activity on my account",
            "login alert that wasnt me",
        ),
        details=(
            "I've already changed my password.",
            "Please check which devices have accessed my account.",
            "This is really worrying given it's my home security system.",
            "I have young kids so I need to know nobody can see the cameras.",
            "Can you log out every session except mine?",
            "I've turned on two-factor now.",
            "It definitely wasn't me or anyone in my house.",
            "I'm worried my account has been compromised.",
            "Can you tell me if my personal data has been accessed?",
            "This is a security issue so please treat it as urgent.",
        ),
    ),
    Intent(
        name="phishing",
        weight=0.9,
        cores=(
            "I got an email claiming to be from Kestrel asking me to confirm my card details. Is "
            "this real?",
            "I received a text saying a parcel is held and I need to pay a fee through a link. "
            "Is that from you?",
            "Reporting a phishing website that copies your login page exactly.",
            "Someone called me pretending to be Kestrel support and asked for my verification "
            "code.",
            "I clicked a link in an email that looked like it was from you and entered my "
            "password. What should I do?",
            "I'm getting emails from a Kestrel-looking address offering a free camera if I log in.",
            "Is support@kestrel-help.net one of your addresses? It doesn't look right.",
            "A pop-up on a website said my Kestrel subscription had expired and asked for payment.",
        ),
        shorts=(
            "phishing email",
            "is this email from you?",
            "scam text",
            "fake kestrel email",
            "reporting a scam",
            "phishing text pretending to be kestrel",
        ),
        details=(
            "The sender address looked odd.",
            "I can send you a screenshot.",
            "My elderly neighbour got something similar.",
            "It looks like a phishing attempt to me.",
            "I just want to make sure it's a scam before I delete it.",
            "You might want to warn your other customers.",
            "The link went to a site that looked exactly like yours.",
        ),
    ),
    Intent(
        name="data_rights",
        weight=1.2,
        cores=(
            "Please delete my account and all my personal data under GDPR.",
            "I'd like a copy of all the data you hold about me.",
            "How long do you keep video recordings on your servers?",
            "I want my recordings permanently deleted, not just hidden from the app.",
            "Do you share my data with third parties or advertisers?",
            "I withdraw my consent for you to use my data for marketing.",
            "Can you confirm where my data is stored? Is it kept inside the EU?",
            "I'm making a subject access request for everything linked to my email address.",
            "I closed my account months ago, why do you still have my details?",
            "Please remove my details from your marketing lists and confirm once done.",
        ),
        shorts=(
            "delete my data",
            "gdpr request",
            "data deletion request",
            "subject access request",
            "erase my data pls",
            "remove my personal info",
            "please delete all my data",
        ),
        details=(
            "Please confirm in writing once it's done.",
            "I understand I have a right to this under data protection law.",
            "This includes any footage of me or my family.",
            "You have one month to respond under the regulations.",
            "I don't want any of my personal information kept on file.",
            "That includes my address, my payment details and all recordings.",
            "I'm asking under GDPR.",
        ),
    ),
    Intent(
        name="privacy_concern",
        weight=0.8,
        cores=(
            "Is the camera footage encrypted end to end?",
            "I think I've found a security vulnerability in your web dashboard and want to "
            "report it responsibly.",
            "Why does the app need access to my contacts and my location all the time?",
            "Your emails include my full address and phone number in plain text, that's not safe.",
            "Can Kestrel staff view my camera footage?",
            "The indoor camera keeps recording even when I set it to privacy mode.",
            "How do I block my neighbour's garden out of the recordings? I don't want to film "
            "them.",
            "Do the police get access to our doorbell recordings without a warrant?",
        ),
        shorts=(
            "is my footage encrypted",
            "privacy concern",
            "who can see my cameras",
            "security vulnerability report",
            "privacy question about recordings",
        ),
        details=(
            "I'd like a straight answer please.",
            "I couldn't find anything about it in the privacy policy.",
            "Privacy matters a lot to us, we have cameras inside the house.",
            "I'm not comfortable with this from a privacy point of view.",
            "I'd like to know exactly who has access to our footage and data.",
        ),
    ),
)

INTENTS: dict[str, tuple[Intent, ...]] = {
    "billing": BILLING,
    "technical_support": TECHNICAL_SUPPORT,
    "account_access": ACCOUNT_ACCESS,
    "shipping": SHIPPING,
    "product_feedback": PRODUCT_FEEDBACK,
    "security_privacy": SECURITY_PRIVACY,
}

# --------------------------------------------------------------------------------------------
# Cross-team material: side remarks, genuinely ambiguous messages and vague messages
# --------------------------------------------------------------------------------------------

# Passing remarks that touch on another team's area; appended to a message from a different
# label, which keeps that message's own label.
SIDE_MENTIONS: dict[str, tuple[str, ...]] = {
    "billing": (
        "And I'm paying {amount} a month for this.",
        "Not great when I'm paying for {plan}.",
        "I'd also like some kind of refund for the hassle.",
        "I think I was overcharged last month too but that's a separate thing.",
        "Honestly considering cancelling my subscription over this.",
        "I'm paying for the premium plan so I expect better.",
        "I only renewed the annual plan last week as well.",
    ),
    "technical_support": (
        "The app has been really slow lately too.",
        "Also the app crashed twice while I was trying to sort this out.",
        "On top of that the camera keeps going offline.",
        "Your website kept giving me an error when I tried to do it myself.",
        "The app froze when I tried to check.",
        "The app also keeps showing a spinning wheel.",
    ),
    "account_access": (
        "I'd check myself but I can't log in at the moment.",
        "I also can't get into my account to look.",
        "And the password reset email never came either.",
        "I had to reset my password just to write this.",
        "The app keeps signing me out as well.",
    ),
    "shipping": (
        "And the parcel took two weeks to arrive in the first place.",
        "The delivery was late as well.",
        "It also came in a damaged box.",
        "The device only arrived on {date}.",
        "The courier left it out in the rain too.",
    ),
    "product_feedback": (
        "Honestly the app design doesn't help.",
        "The new layout makes it hard to find anything.",
        "Otherwise I love the product.",
        "It's a shame because the camera itself is great.",
        "The app used to be so much simpler.",
    ),
    "security_privacy": (
        "I'm also worried someone else has access to my account.",
        "I'm a bit concerned about who can see my data.",
        "I also got a weird email about my account which looked like a scam.",
        "I don't like that my card details are stored either.",
    ),
}

# Messages that sit between two teams; each is labelled with the most plausible team.
AMBIGUOUS: dict[str, tuple[str, ...]] = {
    "billing": (
        "I was charged twice and now I can't log in to check what happened.",
        "The checkout page crashed halfway through but I was still charged {amount}.",
        "The courier confirmed the parcel is lost, so please just refund the {amount} to my card.",
        "I deleted my account months ago and you're still taking money every month.",
        "The cancel subscription button in the app doesn't do anything and I don't want to be "
        "charged again on {date}.",
        "I paid extra for express delivery and it came a week late, I want the delivery charge "
        "back.",
        "My payment keeps failing with error {error} so I can't renew {plan}.",
        "I can't log in to update my card and now my subscription payment has failed.",
        "My son bought {plan} on my account by accident, can I get that refunded?",
        "The app shows I'm on the free plan but my bank shows you charged me {amount}.",
        "I returned the damaged {product} two weeks ago and still no money back.",
        "Since the update the app asks me to pay again even though I already have {plan}.",
        "The app crashed during checkout and now there's a pending charge but no order.",
        "I never received the {product} but the money has gone out of my account.",
    ),
    "technical_support": (
        "I pay for {plan} but the cloud recordings haven't worked for a week.",
        "Since the update I keep getting logged out and the cameras show offline.",
        "The app crashes every time I try to enter my card details.",
        "The {product} arrived fine but it won't power on at all.",
        "The verification code screen freezes and then the app closes.",
        "The new design looks nice but half the buttons don't respond anymore.",
        "The camera has been turning itself on and off randomly all week.",
        "You sent me a replacement hub but the new one won't pair either.",
        "After resetting my password all my devices disappeared from the app.",
        "The doorbell you sent as a replacement has the same connection problem as the first one.",
        "I can log in fine but the app then shows an empty home with none of my devices.",
        "My subscription is active but the app says I need to upgrade to view clips.",
    ),
    "account_access": (
        "I changed my email last week and now I can't log in at all, it doesn't recognise "
        "either address.",
        "I can't log in to cancel my subscription.",
        "The app crashes when I try to log in with Google.",
        "I moved house and now the verification codes go to my old landline.",
        "I can't log in since the update, it just says error {error}.",
        "I need to get into my account to download my invoices but the password reset never "
        "arrives.",
        "I got a new phone and the app won't let me sign in, it says the device isn't recognised.",
        "My account was locked after I got a weird login alert, can you unlock it?",
        "I can't log in to track my order, it says my password is wrong.",
        "My ex changed the password on our shared account and I need access back for the cameras.",
    ),
    "shipping": (
        "The parcel arrived damaged and now the camera won't connect to wifi.",
        "I was charged for delivery but the order still hasn't arrived.",
        "I can't log in to see my tracking details, where's my order {order}?",
        "The tracking email I got looked a bit dodgy, can you confirm where my order actually is?",
        "The replacement hub you promised never turned up.",
        "My order {order} says delivered but it's not here and I've already been charged.",
        "The box arrived but the app doesn't recognise the serial number, I think you sent the "
        "wrong model.",
        "I paid {amount} for next day delivery and it's still not here.",
        "The app says my {product} is on its way but the courier says it was never collected.",
    ),
    "product_feedback": (
        "The app is fine but the monthly price for {plan} feels way too high for what you get.",
        "It would be nice if the login didn't ask for a code every single time.",
        "Honestly the new update is terrible, half the screens look broken.",
        "Please offer eco packaging, my last delivery came in a box three times too big.",
        "Suggestion: show the delivery estimate in the app as well as in the email.",
        "The night vision is great but the app keeps asking me to rate it, which is annoying.",
        "Would be nice to get a reminder before the annual plan renews.",
        "The privacy settings are really hard to find in the new app.",
    ),
    "security_privacy": (
        "There's a {amount} charge I didn't make and my password was changed.",
        "Someone has been buying things on my account with my saved card, I didn't place these "
        "orders.",
        "I got a delivery text with a link asking for a customs payment, looks like a scam.",
        "I can't log in and I got an email saying my password was changed, but I didn't change it.",
        "Please close my account and delete all the recordings, I'm moving to another brand.",
        "My camera turned and followed me around the room while I wasn't using the app.",
        "Someone redirected my order to a different address from inside my account.",
    ),
}

# Low-information messages; labelled with the team the faint hint points to.
VAGUE: dict[str, tuple[str, ...]] = {
    "billing": (
        "Hi, question about my last order, the amount doesn't look right.",
        "Can someone look at my account? Something's off with last month.",
        "question about my subscription",
        "I have a question about order {order} and what I paid.",
        "is the plus thing monthly or yearly",
        "Can I get some money back on this?",
    ),
    "technical_support": (
        "It's still not working.",
        "the camera thing is doing it again",
        "Same problem as before, nothing has changed since my last message.",
        "the {product} isn't doing what it should",
        "it stopped working again",
    ),
    "account_access": (
        "I can't get in.",
        "it won't let me in",
        "need help with my account asap",
        "can't access anything",
        "it keeps saying my details are wrong",
    ),
    "shipping": (
        "question about order {order}",
        "still nothing",
        "any update on my order?",
        "I haven't got it yet.",
        "Is my {product} coming this week or not?",
    ),
    "product_feedback": (
        "just some thoughts on the app",
        "about the new update",
        "quick comment about the {product}",
        "not sure how I feel about the changes",
    ),
    "security_privacy": (
        "something weird is going on with my account",
        "I'm worried about my account",
        "got a strange email",
        "is my information safe with you",
    ),
}

# --------------------------------------------------------------------------------------------
# Shared framing: greetings, openers, closers, tone markers
# --------------------------------------------------------------------------------------------

# Optional sentence that says what the message is about, in the writer's own words.
TOPIC_LINES: dict[str, tuple[str, ...]] = {
    "billing": (
        "I have a question about a payment.",
        "It's about my bill.",
        "I'm contacting you about a charge on my card.",
        "This is about my subscription payments.",
        "Writing about money I'm owed.",
    ),
    "technical_support": (
        "I'm having a technical problem.",
        "Bit of a technical issue here.",
        "Something isn't working properly.",
        "I've run into a problem with the app.",
        "Having trouble getting one of my devices to work.",
    ),
    "account_access": (
        "I'm having trouble getting into my account.",
        "It's about signing in.",
        "I need help accessing my account.",
        "I've got a problem with my login.",
    ),
    "shipping": (
        "It's about a delivery.",
        "This is about an order I'm waiting for.",
        "I'm chasing a parcel.",
        "Question about my delivery.",
    ),
    "product_feedback": (
        "Just some feedback.",
        "Just a bit of feedback, nothing urgent.",
        "Some feedback on the latest update.",
        "I wanted to share some thoughts about the app.",
        "A bit of feedback for your product team.",
    ),
    "security_privacy": (
        "I want to report a possible security issue.",
        "This is a privacy question.",
        "I'm quite worried about the security of my account.",
        "I have a concern about my personal data.",
        "I want to flag something suspicious.",
    ),
}

# Openers that only make sense in writing (left out of phone transcripts).
WRITTEN_ONLY_MARKERS: tuple[str, ...] = ("writing", "email", "live chat")

GREETINGS: tuple[str, ...] = (
    "Hi,",
    "Hello,",
    "Hey,",
    "Good morning,",
    "Good afternoon,",
    "Hi there,",
    "Hello Kestrel team,",
    "To whom it may concern,",
    "Dear support,",
    "Hi support team,",
    "Dear Sir or Madam,",
    "Hiya,",
    "Evening,",
)

OPENERS: tuple[str, ...] = (
    "I've been a customer for a few years now.",
    "I hope someone can help me with this.",
    "This is my second time contacting you about this.",
    "I tried the live chat earlier but it disconnected.",
    "Not sure if this is the right place to ask.",
    "I've already looked through the help centre.",
    "Sorry if this has been asked before.",
    "I'm writing on behalf of my mum who isn't great with technology.",
    "My order number is {order} in case you need it.",
    "We have {n} of your devices at home.",
    "I bought the {product} about {weeks} weeks ago.",
    "I'm writing about my account.",
    "Quick one.",
    "I rang yesterday and was told to email instead.",
    "I got the {product} for Christmas.",
    "We've had Kestrel stuff in the house since we moved in.",
    "I'll keep this short.",
)

CLOSERS: tuple[str, ...] = (
    "Thanks in advance.",
    "Please help.",
    "Any help appreciated.",
    "Can someone get back to me today?",
    "Thank you.",
    "Please sort this out.",
    "Looking forward to hearing from you.",
    "I'd appreciate a quick reply.",
    "Let me know if you need anything else from me.",
    "Cheers.",
    "Thanks for your time.",
    "What are my options?",
    "Please advise.",
    "Many thanks.",
)

# Closers for praise, where "please sort this out" would make no sense.
PRAISE_CLOSERS: tuple[str, ...] = (
    "Thanks.",
    "Thank you.",
    "Cheers.",
    "Keep it up.",
    "Thanks again.",
)

ANGRY: tuple[str, ...] = (
    "This is ridiculous.",
    "I'm really fed up.",
    "Absolutely unacceptable.",
    "Third time I'm writing about this!!",
    "Worst customer service I've ever dealt with.",
    "If this isn't fixed I'm going elsewhere.",
    "I was on hold for an hour yesterday.",
    "SORT IT OUT.",
    "Honestly considering leaving a bad review.",
    "I want this resolved NOW.",
    "Nobody ever replies to my emails.",
    "How hard can it be?",
    "I'm so done with this company.",
    "Don't send me another automated reply.",
)

POLITE: tuple[str, ...] = (
    "Sorry to bother you.",
    "No huge rush.",
    "I really appreciate your help.",
    "I know you're probably busy.",
    "Thank you so much for looking into it.",
)

RAMBLE: tuple[str, ...] = (
    "So I'm not really sure where to start.",
    "I'll try to explain.",
    "To be fair the product itself has been fine, it's just this.",
    "I've got two kids and a dog so I really rely on the cameras.",
    "My husband set it all up originally so I'm not very technical.",
    "We moved house in the summer and everything's been a bit chaotic since.",
    "I work nights so it's hard for me to call during the day.",
    "My daughter usually sorts this kind of thing but she's away.",
    "I did try to find the answer online first.",
    "I know it's probably something simple.",
    "I've had a really long week.",
)

RAMBLE_LEADS: tuple[str, ...] = (
    "Long story short,",
    "Anyway,",
    "Basically,",
    "So,",
    "The thing is,",
    "Right, so",
)

SIDE_LEADS: tuple[str, ...] = ("Also,", "On top of that,", "And", "Oh and", "Plus", "Btw")

SIGNOFF_NAMES: tuple[str, ...] = (
    "Sarah",
    "Tom",
    "Priya Shah",
    "J. Okafor",
    "Marta",
    "Dave",
    "Aisha",
    "Liam O'Connor",
    "Chen Wei",
    "Gareth",
    "Fatima",
    "Hannah B",
    "Mr Patel",
    "Olu",
    "Katarzyna",
    "Rob",
    "Emma",
    "Yusuf",
    "Sophie Turner-Hall",
    "Mike",
    "Niamh",
    "Dr A. Mensah",
    "Lucia",
    "Pete",
    "Jo",
    "Ravi",
    "Grace",
    "Tomasz",
    "Ellie",
    "Ahmed",
)

SIGNOFF_FORMATS: tuple[str, ...] = (
    "Thanks, {name}",
    "Regards, {name}",
    "Best, {name}",
    "Kind regards, {name}",
    "- {name}",
    "{name}",
    "Many thanks, {name}",
    "Cheers, {name}",
)

WEB_FORM_PREFIXES: tuple[str, ...] = (
    "Order number: {order}.",
    "Device: {product}.",
    "Subject: Help needed.",
    "Subject: Issue with my order.",
    "Subject: Question.",
    "Subject: Problem.",
    "Subject: Urgent.",
    "Subject: Complaint.",
    "Re: my account.",
    "Order ref {order} -",
)

REVIEW_NEGATIVE: tuple[str, ...] = (
    "1 star.",
    "One star.",
    "Two stars.",
    "Would give zero stars if I could.",
    "Used to be good.",
    "Disappointed.",
    "Update:",
    "Edit:",
    "3 stars for now.",
)

REVIEW_POSITIVE: tuple[str, ...] = (
    "5 stars!",
    "Five stars.",
    "4 stars.",
    "Great app.",
    "Solid app.",
)

PHONE_STARTS: tuple[str, ...] = (
    "yeah hi, um,",
    "hi yes, hello, so",
    "hello, yeah, so basically",
    "hi there, um, yeah so",
    "yes hello, I'm ringing about a problem, so",
    "hiya, um,",
    "oh hi, right, so",
    "hello, sorry, yeah,",
)

PHONE_ENDS: tuple[str, ...] = (
    "yeah that's it really.",
    "so yeah.",
    "okay thanks.",
    "can you help with that?",
    "um, yeah.",
    "that's basically it.",
)

FILLERS: tuple[str, ...] = ("um,", "uh,", "like,", "you know,", "erm,")

# --------------------------------------------------------------------------------------------
# Slot values
# --------------------------------------------------------------------------------------------

PRODUCTS: tuple[str, ...] = (
    "Cam 2",
    "Doorbell Pro",
    "doorbell",
    "thermostat",
    "Kestrel Hub",
    "hub",
    "indoor cam",
    "outdoor camera",
    "Smart Lock",
    "smart plug",
    "motion sensor",
    "floodlight camera",
    "air quality monitor",
    "bulb starter kit",
    "Cam Mini",
    "video doorbell",
)

PLANS: tuple[str, ...] = (
    "Kestrel Plus",
    "Plus",
    "Plus Family",
    "Premium",
    "Kestrel Premium",
    "Protect",
)

DEVICES: tuple[str, ...] = (
    "iPhone 12",
    "iPhone 15",
    "Pixel 7",
    "Galaxy S21",
    "Samsung A52",
    "iPad",
    "OnePlus 9",
    "Android phone",
    "Moto G",
    "iPhone SE",
    "Xiaomi phone",
)

VERSIONS: tuple[str, ...] = ("4.12.1", "4.13", "5.0.2", "5.1", "3.9.8", "5.2.0")

ERRORS: tuple[str, ...] = ("E-1042", "E-2031", "500", "403", "KH-17", "E17", "0x8004")

CARRIERS: tuple[str, ...] = (
    "DPD",
    "UPS",
    "DHL",
    "FedEx",
    "Royal Mail",
    "Evri",
    "Parcelforce",
    "USPS",
)

CARDS: tuple[str, ...] = (
    "my Visa",
    "a Mastercard",
    "my debit card",
    "PayPal",
    "Apple Pay",
    "my Amex",
    "my credit card",
)

CITIES: tuple[str, ...] = (
    "Lagos",
    "Moscow",
    "Singapore",
    "Manila",
    "Frankfurt",
    "Sao Paulo",
    "somewhere in Vietnam",
    "a city I've never been to",
    "Toronto",
    "Dublin",
)

COMPANIES: tuple[str, ...] = (
    "Halden Design Ltd",
    "Brightwater Dental",
    "Osei & Partners",
    "Northfield Lettings",
    "MK Plumbing",
    "Vale Studios",
)

PROMOS: tuple[str, ...] = ("SAVE20", "WELCOME10", "SPRING15", "BF2025", "FRIENDS10", "HOME25")

DATES: tuple[str, ...] = (
    "Monday",
    "Tuesday",
    "Friday",
    "the 3rd",
    "March 14th",
    "12/04",
    "the weekend",
    "the 21st",
    "2 October",
    "the 9th",
    "Thursday",
    "June 30",
    "the 1st",
)

DAYS: tuple[str, ...] = ("3", "4", "five", "six", "10", "12", "two", "eight")
WEEKS: tuple[str, ...] = ("2", "3", "three", "four", "six", "two")
COUNTS: tuple[str, ...] = ("3", "three", "four", "five", "six", "12")
PRICES: tuple[float, ...] = (4.99, 7.99, 9.99, 12.99, 14.99, 19.99, 49.99, 89.0, 129.99, 179.0)
CURRENCIES: tuple[str, ...] = ("£", "£", "$", "€")

# --------------------------------------------------------------------------------------------
# Misspellings (correct word -> realistic mistakes)
# --------------------------------------------------------------------------------------------

MISSPELLINGS: dict[str, tuple[str, ...]] = {
    "receive": ("recieve",),
    "received": ("recieved", "recived"),
    "receiving": ("recieving",),
    "password": ("pasword", "passwrod", "passowrd"),
    "account": ("acount", "accout", "acccount"),
    "address": ("adress", "addres"),
    "definitely": ("definately", "definitly"),
    "because": ("becuase", "becasue", "bc"),
    "the": ("teh", "hte"),
    "tracking": ("trackign", "traking"),
    "subscription": ("subscripton", "subsciption", "subcription"),
    "delivery": ("delivary", "delievery", "delivry"),
    "refund": ("refnud", "rufund", "refun"),
    "payment": ("payement", "paymnet"),
    "charged": ("chraged", "charegd"),
    "immediately": ("immediatly", "imediately"),
    "appreciate": ("apreciate", "appriciate"),
    "until": ("untill",),
    "which": ("wich", "whcih"),
    "really": ("realy", "relly"),
    "already": ("allready", "alredy"),
    "business": ("buisness", "busness"),
    "order": ("oder", "ordr"),
    "message": ("mesage", "messgae"),
    "working": ("wroking", "workign"),
    "again": ("agian", "agan"),
    "tomorrow": ("tommorow", "tomorow"),
    "problem": ("problme", "probelm"),
    "please": ("plese", "pleas"),
    "verification": ("verfication", "verificaton"),
    "arrived": ("arived", "arrvied"),
    "different": ("diffrent", "diferent"),
    "invoice": ("invoce", "invocie"),
    "unfortunately": ("unfortunatly", "unfortunetly"),
    "notifications": ("notifcations", "notificatons"),
    "weird": ("wierd",),
    "separate": ("seperate",),
    "months": ("monhts", "mnths"),
    "still": ("stil",),
    "anything": ("anythign", "anyting"),
    "their": ("there",),
    "there": ("their",),
    "it's": ("its",),
    "your": ("you're", "ur"),
    "cancelled": ("cancelld", "canceld"),
    "recordings": ("recordigns", "recodings"),
    "camera": ("camara", "cmaera"),
    "parcel": ("parcle", "parsel"),
    "warehouse": ("warehose",),
    "customer": ("cusotmer", "custmer"),
    "login": ("loign", "lgoin"),
    "email": ("emial", "emai"),
    "doesn't": ("doesnt", "dosent"),
    "haven't": ("havent", "havnt"),
}
