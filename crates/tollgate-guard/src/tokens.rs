//! Prompt token counts: a byte bound that decides most requests, and exact counts from a real
//! BPE tokenizer for the rest.

use tollgate_core::chat::{Content, Message, Part};
use tollgate_core::{ChatRequest, Field};

/// Tokens OpenAI adds per message (`<|start|>{role}\n ... <|end|>`), for its chat models.
pub(crate) const PER_MESSAGE: u64 = 3;
/// Tokens of the reply's priming (`<|start|>assistant<|message|>`).
pub(crate) const REPLY_PRIMING: u64 = 3;
/// Extra token for a message's `name`.
const PER_NAME: u64 = 1;
/// The longest role ("developer") in bytes: a bound on its tokens.
const MAX_ROLE_BYTES: u64 = 9;
/// A bound of the tokens a message adds beyond its text.
pub(crate) const MESSAGE_BOUND: u64 = PER_MESSAGE + MAX_ROLE_BYTES + PER_NAME;

/// A BPE encoding of OpenAI's.
///
/// ```
/// use tollgate_guard::Encoding;
///
/// assert_eq!(Encoding::for_model("gpt-5.4"), Encoding::O200kBase);
/// assert_eq!(Encoding::for_model("openai/gpt-4o-mini"), Encoding::O200kBase);
/// assert_eq!(Encoding::for_model("gpt-4-turbo"), Encoding::Cl100kBase);
/// assert_eq!(Encoding::O200kBase.count("tiktoken is great!"), 6);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `o200k_base`: GPT-4o, GPT-4.1, GPT-5, the o-series, and the default for other models.
    O200kBase,
    /// `cl100k_base`: GPT-4, GPT-3.5 Turbo and the text-embedding-3 models.
    Cl100kBase,
}

impl Encoding {
    /// The encoding of a model family (a `provider/` prefix is ignored). Models outside
    /// OpenAI's families get `o200k_base`: their count is then an estimate.
    pub fn for_model(model: &str) -> Encoding {
        let name = model.rsplit('/').next().unwrap_or(model);
        let cl100k = [
            "gpt-4-",
            "gpt-3.5",
            "text-embedding-3",
            "text-embedding-ada",
        ];
        if name == "gpt-4" || cl100k.iter().any(|prefix| name.starts_with(prefix)) {
            Encoding::Cl100kBase
        } else {
            Encoding::O200kBase
        }
    }

    /// Tokens of `text` in this encoding.
    pub fn count(self, text: &str) -> u64 {
        self.tokenizer().count(text) as u64
    }

    fn tokenizer(self) -> &'static bpe_openai::Tokenizer {
        match self {
            Encoding::O200kBase => bpe_openai::o200k_base(),
            Encoding::Cl100kBase => bpe_openai::cl100k_base(),
        }
    }

    /// Loads the tokenizer now (tens of milliseconds), rather than on the first request that
    /// needs an exact count.
    pub fn warm_up(self) {
        self.tokenizer();
    }
}

/// An upper bound of the prompt's tokens without tokenizing: a byte-level BPE never yields more
/// tokens than bytes, and JSON escapes are never shorter than what they encode.
pub fn prompt_bound(chat: &ChatRequest) -> u64 {
    let messages = chat.message_count() as u64;
    REPLY_PRIMING + chat.prompt_bytes() as u64 + messages * MESSAGE_BOUND
}

/// The prompt's tokens as OpenAI counts them for chat models: per message 3 + role + content
/// (+ name + 1), plus 3 for the reply. Text parts are counted; images and other parts are not.
pub fn count_prompt(chat: &ChatRequest, encoding: Encoding) -> u64 {
    let Field::Value(messages) = chat.messages_field() else {
        return REPLY_PRIMING;
    };
    let count_message = |message: &Message| {
        let text = |span| encoding.count(&chat.text(span));
        let role = message.role.value().map_or(0, |role| text(*role));
        let content = match &message.content {
            Content::Text(span) => text(*span),
            Content::Parts(parts) => parts
                .iter()
                .map(|part| match part {
                    Part::Text(span) => text(*span),
                    Part::Other | Part::Invalid(_) => 0,
                })
                .sum(),
            Content::Absent | Content::Invalid(_) => 0,
        };
        let name = message.name.map_or(0, |name| text(name) + PER_NAME);
        PER_MESSAGE + role + content + name
    };
    REPLY_PRIMING + messages.iter().flatten().map(count_message).sum::<u64>()
}
