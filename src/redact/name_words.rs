//! Word lists of the person-name detector: the embedded census dictionaries, and the small
//! hand-kept lists that keep it precise (tech names, common capitalised words, context
//! phrases, surname particles).
//!
//! Input/output: constants only, read once by `Names::new`. Invariant: every list is plain
//! ASCII or lower-case as documented per list; changing them changes detection, so each
//! change needs a test in `tests.rs`.

pub(super) const FIRST_NAMES: &str = include_str!("data/first_names.txt");
pub(super) const SURNAMES: &str = include_str!("data/surnames.txt");

/// Words that name software, not people, in agent traces.
#[rustfmt::skip]
pub(super) const TECH: &[&str] = &[
    "Jenkins", "Julia", "Ada", "Kafka", "Celery", "Dart", "Sinatra", "Sentry", "Maven", "Bazel",
    "Grafana", "Vera", "Hadoop", "Lorenz", "Ansible", "Hudson", "Phoenix", "Django", "Prometheus",
    "Pascal", "Kotlin", "Elixir", "Jasmine", "Sidekiq", "Cassandra", "Ruby", "Mocha", "Python",
    "Rust", "Swift", "Docker", "Redis", "Flask", "Rails", "Spark", "Kibana", "Scala", "Perl",
    "Haskell", "Erlang", "Nginx", "Apache", "React", "Angular", "Vue", "Svelte", "Ember",
    "Laravel", "Alpine", "Debian", "Ubuntu", "Fedora", "Hugo", "Jekyll", "Gatsby", "Apollo",
    "Hermes", "Athena", "Minerva", "Iris", "Nova", "Aurora", "Jest", "Chef", "Puppet", "Salt",
    "Vagrant", "Consul", "Nomad", "Vault", "Envoy", "Kong", "Istio", "Linkerd", "Helm", "Flux",
    "Argo", "Tekton", "Travis", "Circle", "Drone", "Gitlab", "Github", "Jira", "Confluence",
    "Slack", "Zoom", "Teams", "Stripe", "Plaid", "Twilio", "Claude", "Gemini", "Llama", "Mistral",
];

/// Capitalised words that start sentences, greet or label, and are not names.
#[rustfmt::skip]
pub(super) const COMMON: &[&str] = &[
    "Hi", "Hello", "Hey", "Dear", "Thanks", "Thank", "Regards", "Best", "Kind", "Cheers",
    "Sincerely", "Name", "Customer", "Team", "All", "Everyone", "There", "Sir", "Madam", "World",
    "Support", "Mr", "Ms", "Mrs", "Dr", "Prof", "The", "This", "That", "Please", "Can", "Could",
    "Would", "Will", "Our", "Your", "My", "We", "You", "They", "He", "She", "It", "If", "When",
    "What", "Why", "How", "Who", "And", "But", "Or", "For", "From", "To", "In", "On", "At", "By",
    "With", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December", "Street", "Avenue", "Road", "Account", "Holder", "Patient",
    "Client", "User", "Admin", "Manager", "Sign", "Ship", "Forward", "Note", "Verified", "Created",
    "Error", "Warning", "Info", "Debug", "Observation", "Thought", "Action", "Input", "Question",
    "Answer", "Final", "Summary", "Ticket", "Order", "Refund", "Invoice", "Payment", "Card",
    "Phone", "Email", "Address", "Date", "Birth", "Good", "Morning", "Afternoon", "Evening",
    "Quick", "Urgent", "Just", "Also", "Yes", "No", "Sorry", "Ok", "Okay", "Great", "Sure", "Here",
    "Contact", "Legal", "Bank", "Inc", "Ltd", "Corp", "Group", "Company", "Service", "Services",
    "Global", "International", "University", "Hospital", "Foods", "Logistics", "Solutions",
    "Systems", "Technologies", "Partners",
];

/// Preceding words (lower-case, trailing `:"'|*=` etc. stripped) that introduce a name.
#[rustfmt::skip]
pub(super) const TRIGGERS: &[&str] = &[
    "name", "full_name", "fullname", "first_name", "last_name", "display_name", "holder",
    "holder_name", "account holder", "beneficiary", "counterparty", "author", "patient",
    "customer", "contact", "assignee", "recipient", "passenger", "employee", "landlord", "tenant",
    "legal name", "my name is", "name is", "i'm", "i am", "this is", "dear", "hi", "hello", "hey",
    "regards", "thanks", "thank you", "best", "cheers", "sincerely", "sign it", "signed", "attn",
    "mr.", "mrs.", "ms.", "dr.", "prof.", "mr", "mrs", "ms", "dr", "new hire", "manager",
    "verified", "created for", "noted", "note to", "forward this to", "cc", "emergency contact",
    "pt", "owner", "applicant", "guest", "member", "traveler", "insured", "spouse", "witness",
    "ship it to", "kyc: verified",
];

#[rustfmt::skip]
pub(super) const PARTICLES: &[&str] = &[
    "van", "der", "den", "de", "da", "von", "di", "del", "della", "la", "le", "du", "dos", "das",
    "ten", "ter", "bin", "al",
];

/// FNV-1a: the sets hold short ASCII words, looked up once per capitalised token, so a
/// cheap non-cryptographic hash matters (the sets are built from constants, not input).
#[derive(Default)]
pub(super) struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}
