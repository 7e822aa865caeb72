/// Word lists for plausible CRM text. Kept free of quotes and backslashes so values can be placed
/// in JSON without escaping.
enum CRMVocabulary {
    static let firstNames = """
    James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan
    Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty Anthony Sandra
    Mark Margaret Donald Ashley Steven Kimberly Andrew Emily Paul Donna Joshua Michelle Kenneth Carol
    Kevin Amanda Brian Melissa George Deborah Timothy Stephanie Ronald Rebecca Jason Sharon Edward Laura
    Jeffrey Cynthia Ryan Dorothy Jacob Amy Gary Kathleen Nicholas Angela Eric Shirley Jonathan Emma
    Stephen Brenda Larry Pamela Justin Nicole Scott Anna Brandon Samantha Benjamin Katherine Samuel
    Christine Gregory Debra Alexander Rachel Patrick Carolyn Frank Janet Raymond Maria Jack Olivia
    Dennis Heather Jerry Helen Tyler Catherine Aaron Diane Jose Julie Adam Victoria Nathan Joyce Henry
    Lauren Zachary Kelly Douglas Christina Peter Ruth Kyle Joan Noah Virginia Ethan Judith Jeremy Evelyn
    Walter Hannah Christian Andrea Keith Megan Roger Cheryl Terry Jacqueline Austin Madison Sean Teresa
    Gerald Abigail Carl Sophia Harold Martha Dylan Sara Arthur Gloria Lawrence Janice Jordan Kathryn
    Jesse Ann Bryan Isabella Billy Judy Bruce Charlotte Gabriel Julia Joe Grace Logan Amber Alan Alice
    Juan Jean Albert Denise Willie Frances Elijah Danielle Wayne Marilyn Randy Natalie Vincent Beverly
    Mason Diana Roy Brittany Ralph Theresa Bobby Kayla Russell Alexis Bradley Doris Philip Lori Eugene Tiffany
    Hiroshi Yuki Wei Mei Raj Priya Ahmed Fatima Lars Ingrid Pierre Camille Luca Giulia Mateo Sofia Jonas Lena
    """.split(whereSeparator: \.isWhitespace).map(String.init)

    static let lastNames = """
    Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez
    Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark
    Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams
    Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker
    Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper
    Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James
    Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez
    Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher Vasquez
    Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West Cole
    Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall Owens
    Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb Tucker
    Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Munoz
    Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice
    Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan Gardner Payne Grant Dunn Kelley
    Spencer Hawkins Arnold Pierce Vazquez Hansen Peters Santos Hart Bradley Knight Elliott Cunningham
    Duncan Armstrong Hudson Carroll Lane Riley Andrews Alvarado Ray Delgado Berry Perkins Hoffman
    Johnston Matthews Pena Richards Contreras Willis Carpenter Lawrence Sandoval Guerrero George Chapman
    Tanaka Sato Suzuki Wang Li Zhang Singh Kumar Sharma Khan Ali Hansen Larsen Dubois Moreau Rossi Bianchi
    Schneider Fischer Weber Becker Novak Kowalski Nielsen Lindqvist Okafor Mensah Haddad Costa Oliveira
    """.split(whereSeparator: \.isWhitespace).map(String.init)

    static let companyStems = """
    Northwind Bluepeak Redstone Silverline Greenfield Ironbridge Clearwater Brightpath Oakridge
    Summit Harbor Pinecrest Riverbend Stonegate Westbrook Eastgate Lakeside Highland Meadow Cedar
    Maple Falcon Eagle Horizon Pioneer Atlas Apex Vertex Nimbus Orion Polaris Zenith Vantage Keystone
    Crescent Evergreen Golden Granite Copper Cobalt Sapphire Emerald Crimson Amber Willow Aspen Birch
    Harborview Kingsley Ashford Bramble Fairview Glenwood Hawthorne Linden Marlow Norfolk Prescott
    Quantum Radiant Sterling Trident Unity Valor Wexford Yardley Beacon Compass Anchor Lantern Meridian
    Sequoia Tidewater Bayside Canyon Frontier Heritage Liberty Patriot Prairie Redwood Sunrise Sunset
    """.split(whereSeparator: \.isWhitespace).map(String.init)

    static let companyKinds = """
    Logistics Dental Builders Consulting Plumbing Electric Bakery Legal Accounting Realty Motors
    Landscaping Design Media Printing Catering Fitness Clinic Pharmacy Roofing Flooring Cleaning
    Software Analytics Marketing Insurance Travel Events Studio Imports Supply Hardware Outfitters
    Veterinary Optics Tailors Brewing Coffee Foods Farms Florist Salon Garage Storage Security
    """.split(whereSeparator: \.isWhitespace).map(String.init)

    static let companySuffixes = ["LLC", "Inc", "Ltd", "Co", "Group", "& Sons", "Partners", "GmbH", "", "", ""]

    static let mailDomains = ["gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me", "hotmail.com"]

    static let cities: [(String, String)] = [
        ("Springfield", "US"), ("Portland", "US"), ("Austin", "US"), ("Denver", "US"), ("Madison", "US"),
        ("Columbus", "US"), ("Raleigh", "US"), ("Boise", "US"), ("Tucson", "US"), ("Omaha", "US"),
        ("Sacramento", "US"), ("Richmond", "US"), ("Savannah", "US"), ("Albany", "US"), ("Tampa", "US"),
        ("Toronto", "CA"), ("Vancouver", "CA"), ("Calgary", "CA"), ("Ottawa", "CA"), ("Halifax", "CA"),
        ("Manchester", "GB"), ("Leeds", "GB"), ("Bristol", "GB"), ("Glasgow", "GB"), ("Cardiff", "GB"),
        ("Dublin", "IE"), ("Cork", "IE"), ("Lyon", "FR"), ("Nantes", "FR"), ("Munich", "DE"),
        ("Hamburg", "DE"), ("Cologne", "DE"), ("Rotterdam", "NL"), ("Utrecht", "NL"), ("Antwerp", "BE"),
        ("Porto", "PT"), ("Valencia", "ES"), ("Bologna", "IT"), ("Gothenburg", "SE"), ("Aarhus", "DK"),
        ("Melbourne", "AU"), ("Brisbane", "AU"), ("Auckland", "NZ"), ("Wellington", "NZ"), ("Cape Town", "ZA"),
    ]

    static let streetNames = """
    Main Oak Pine Maple Cedar Elm Washington Lake Hill Park River Church Mill Spring Market Bridge
    High Station School Water Forest Meadow Sunset Highland Franklin Lincoln Jefferson Madison Harbor
    """.split(whereSeparator: \.isWhitespace).map(String.init)

    static let streetKinds = ["Street", "Avenue", "Road", "Lane", "Drive", "Boulevard", "Way", "Court", "Place"]

    static let jobTitles = [
        "Owner", "Office Manager", "Operations Manager", "Purchasing Manager", "CEO", "CFO", "COO",
        "Practice Manager", "Head of Sales", "Marketing Director", "IT Manager", "Procurement Lead",
        "General Manager", "Founder", "Accountant", "Facilities Manager", "Project Manager", "Director",
    ]

    static let industries = [
        "construction", "healthcare", "legal", "retail", "hospitality", "manufacturing", "logistics",
        "education", "real_estate", "finance", "technology", "agriculture", "automotive", "nonprofit",
        "professional_services", "food_and_beverage", "fitness", "beauty", "media", "energy",
    ]

    static let leadSources = ["website", "referral", "cold_call", "trade_show", "linkedin", "email_campaign", "partner", "google_ads"]
    static let leadStatuses = ["new", "contacted", "qualified", "proposal", "negotiation", "won", "lost"]
    static let clientStatuses = ["active", "active", "active", "active", "inactive", "churned"]
    static let roles = ["admin", "manager", "sales", "sales", "sales", "sales", "support", "support", "accounting"]
    static let locations = ["office", "office", "office", "remote", "remote", "client_site"]
    static let products = [
        "starter plan", "professional plan", "enterprise plan", "annual maintenance", "onboarding package",
        "support contract", "hardware bundle", "training day", "consulting hours", "premium add-on",
        "data migration", "integration module", "mobile app licence", "extra seats", "custom report",
    ]
    static let competitors = ["Zenbooks", "SalesPro", "Pipewise", "CloseRight", "DealFlow", "OfficeHub", "their current vendor"]
    static let weekdays = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
    static let months = ["January", "February", "March", "April", "May", "June", "July", "August",
                         "September", "October", "November", "December"]
    static let tags = ["vip", "hot", "cold", "follow-up", "budget-approved", "decision-maker", "renewal",
                       "upsell", "at-risk", "newsletter", "partner", "priority", "q1", "q2", "q3", "q4"]
    static let preferredContacts = ["email", "phone", "sms", "whatsapp", "in_person"]
    static let budgets = ["<5k", "5k-20k", "20k-50k", "50k-100k", ">100k", "unknown"]
    static let timezones = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
                            "Europe/London", "Europe/Berlin", "Europe/Paris", "Australia/Sydney"]
    static let languages = ["en", "en", "en", "fr", "de", "es", "nl", "it"]

    /// User agents as templates: `@` is a random digit, `#` a random number (build and patch versions).
    static let userAgents = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/12@.0.#.# Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_@) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/1@.@ Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:12@.0) Gecko/20100101 Firefox/12@.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 1@_@ like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/1@.@ Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 1@; Pixel @) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/12@.0.#.# Mobile Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/12@.0.#.# Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/12@.0.#.# Safari/537.36 Edg/12@.0.#.#",
        "CRM-Mobile/3.@.@ (iOS 1@.@; iPhone1@,@)",
        "CRM-Mobile/3.@.@ (Android 1@; SM-S#B)",
    ]

    /// Browser, operating system and device for each entry of `userAgents`, as a log would parse them.
    static let userAgentSummaries = [
        ("Chrome", "Windows", "desktop"), ("Safari", "macOS", "desktop"), ("Firefox", "Windows", "desktop"),
        ("Safari", "iOS", "mobile"), ("Chrome", "Android", "mobile"), ("Chrome", "Linux", "desktop"),
        ("Edge", "Windows", "desktop"), ("CRM-Mobile", "iOS", "mobile"), ("CRM-Mobile", "Android", "mobile"),
    ]

    /// Sentence templates for notes and comments. Slots: {P} person, {D} weekday, {X} product,
    /// {N} small number, {A} amount, {M} month, {C} competitor, {W} free words,
    /// {I} invoice number, {E} exact amount, {T} date, {H} phone number.
    static let templates = """
    Called {P} about the {X}; they want a quote by {D}.
    Left a voicemail for {P}, will try again on {D}.
    Sent the revised proposal for the {X} with a {N}% discount.
    {P} asked whether the {X} includes {W}.
    Meeting with {P} went well, they are comparing us with {C}.
    Budget confirmed at around {A} for this year.
    Follow up in {M} when the new fiscal year starts.
    They need approval from {P} before signing anything.
    Demo scheduled for {D} at {N}:30 with the whole team.
    Invoice {I} was paid late again, keep an eye on this account.
    Invoice {I} for {E} is still open, reminder sent on {T}.
    Credit note issued against {I}, new total {E}.
    Their direct line is {H}, ask for {P}.
    Next check-in booked for {T}, agenda: {W}.
    Quote {I} accepted on {T} for {E}.
    Customer reported an issue with {W}, escalated to support.
    {P} mentioned that {W}.
    Renewal of the {X} is due in {M}.
    Asked for references from similar customers in their industry.
    Not interested right now, check back in {M}.
    Price is the main objection; {C} offered {A} for the same scope.
    Contract sent for signature, waiting for {P}.
    Great call, {P} is very keen on the {X}.
    Need to prepare a custom report on {W} before the next meeting.
    They are opening a second location in {M} and will need {N} more seats.
    Email bounced, found a new address on their website.
    Onboarding completed, {P} is the main contact from now on.
    Trial extended by {N} days at their request.
    Discussed payment terms: net {N}, monthly billing.
    Introduced {P} to our partner for the {X}.
    Complaint about response times last week, apologised and offered a training day.
    """.split(separator: "\n").map { $0.trimmingWhitespace() }

    /// Free vocabulary for the {W} slot and for loosely worded sentences.
    static let words = """
    the a their our new old current next last this that some every team office staff customer client
    invoice order delivery schedule price quote contract meeting call email report website account
    system data export import payment billing support training update version feature module problem
    issue request question answer approval budget deadline project launch rollout migration backup
    integration calendar reminder task note document file template dashboard pipeline forecast target
    quarter month week day morning afternoon evening soon later today tomorrow yesterday already still
    needs wants asked said confirmed expects prefers likes dislikes mentioned requested approved delayed
    moved cancelled booked reviewed shared signed renewed upgraded downgraded missed received sent
    with for about from into after before during without between because while although unless until
    quickly slowly carefully probably definitely maybe again also only just really very quite rather
    small large urgent important simple complex expensive cheap flexible reliable slow fast friendly
    manager owner director assistant accountant technician designer developer consultant partner vendor
    warehouse shop store clinic studio kitchen site branch headquarters region market segment industry
    discount offer package bundle plan tier licence seat user login password access permission role
    printer laptop phone tablet network server cloud storage mailbox spreadsheet catalogue brochure
    """.split(whereSeparator: \.isWhitespace).map(String.init)

    static let notificationKinds: [(kind: String, title: String)] = [
        ("lead_assigned", "New lead assigned to you"),
        ("task_due", "Task due today"),
        ("comment_mention", "You were mentioned in a comment"),
        ("deal_won", "Deal won"),
        ("deal_lost", "Deal lost"),
        ("invoice_overdue", "Invoice overdue"),
        ("meeting_reminder", "Meeting in 15 minutes"),
        ("client_updated", "Client details updated"),
        ("weekly_digest", "Your weekly pipeline digest"),
    ]

    static let actions = [
        "lead.viewed", "client.viewed", "lead.updated", "client.updated", "email.sent", "call.logged",
        "meeting.scheduled", "task.completed", "report.exported", "user.login", "user.logout",
        "search.performed", "file.uploaded", "invoice.viewed",
    ]
}

extension Substring {
    /// The text without leading and trailing whitespace.
    func trimmingWhitespace() -> String {
        var view = self[...]
        while let first = view.first, first.isWhitespace { view = view.dropFirst() }
        while let last = view.last, last.isWhitespace { view = view.dropLast() }
        return String(view)
    }
}
