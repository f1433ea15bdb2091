// loom.h — the LLooM: the tree of likely continuations of a prompt, drawn
// from the raw logits (softmax at temperature 1, no other sampler), for a
// writer to pick from — beam search with a human choosing.
//
// The tree grows breadth first. A node is one token; the children of a node
// are taken from the distribution after it (after the prompt, for the root):
//   - the most likely token always continues (even below the cutoff);
//   - every other token with probability >= cutoff_d splits off a new branch,
//     where cutoff_d = cutoff × multiplier^d at depth d (d = 0 for the
//     root's children, the first token of a suggestion);
//   - a node has at most `split` children, the most likely first (0: no limit
//     besides the cutoff and LOOM_MAX_CHILDREN).
// A branch ends (a leaf, one suggestion) when
//   - it has `depth` tokens;
//   - auto-stop is on and its newest token holds '.' or ',' after some text
//     that is neither a stop character nor white space: a suggestion that
//     starts with ", " or "..." goes on past them (the token is kept whole);
//   - the model ends the text (the end-of-generation token is not part of
//     the suggestion; a suggestion that would be empty is dropped).
// Score: the sum of the token probabilities along the branch, or the sum of
// their log-probabilities (logprob). Suggestions with the same text are
// merged (the best score is kept), sorted by score (ties: by text bytes),
// and only the best `max` are returned.
//
// Leading space rule: the engine works on tokens; a suggestion's text is
// exactly the bytes that follow the prompt (decoded as a continuation, never
// trimmed), so after "Once upon a time" it reads " there was" with the space
// the model put in front of its first word. Appending a suggestion's text to
// the prompt always gives the text the model saw. A prompt typed with one
// trailing space would make the model write an odd space token first, so
// front ends drop one trailing space (loom_trim_prompt) before tokenizing and
// show the suggestions that follow it; dedup compares the texts exactly.
//
// Batching: every depth is decoded as one fwd_decode over all open branches
// (sess_decode_many, one token each), and branches share their prefix cells:
// the first continuing child of a node takes over its parent's sequence and
// the others fork it (sess_fork: the cells are shared, not copied); finished
// branches free their sequences. Live sequences are bounded by the sequence
// ids the caller lends (params.seqs, at most KV_MAX_SEQ - 1 besides the
// root's), and one decode takes at most min(n_batch, n_outputs) branches of
// the context. When a depth's frontier is larger, it is decoded in several
// batches (in frontier order, so siblings go together). A branch that found
// no free sequence (a "cold" branch) later takes the held sequence sharing
// the longest prefix with its path — a finished branch's (kept as a spare
// until its id is needed), a sibling's, the root's — reusing or forking it,
// and decodes only the tokens it lacks (still in the batch); without a free
// id one is taken back from the next depth's branches (that branch turns
// cold). Beyond ~63 open branches paths get lost and re-decoded: cutoff 0,
// split 3, depth 7 (1092 expanded nodes) decodes ~4100 tokens in 21 batches
// where the naive expansion decodes ~1300 in 1092 calls. The tree does not depend on this
// split — except through rounding: a decode of many tokens runs other
// kernels (gemm) than one of a single token (gemv), so logits differ in the
// last bits, and two probabilities that close may rank differently in the
// batched and the naive expansion (seen only on flat random-weight models).
// Bounds for hostile parameters (cutoff 0, split 0): a frontier above
// max_frontier keeps its best-scored branches (result .truncated), and a
// tree of more than max_nodes nodes is refused with SIM_ERR_RANGE.
//
//     sess *root;   // holds the prompt, fresh logits (sess_set_prompt)
//     loom_params lp = loom_default_params();
//     lp.on_node = draw; lp.ud = view;            // optional: stream the tree
//     loom_result r;
//     if (loom_expand(root, &lp, &r, &err) != SIM_OK) ...   // err.msg
//     for (int i = 0; i < r.n_suggestions; i++) printf("%.3f %s\n", r.suggestions[i].score, r.suggestions[i].text);
//     loom_result_free(&r);
//
// Ownership: the root session is borrowed and left as it was (its sequence,
// tokens and logits); the sequence ids in params.seqs are used and emptied.
// The result owns its arrays (loom_result_free). Errors (a full context, no
// memory, an abort from a callback) return a status with a message in err,
// leave nothing in the result and release every sequence used.
#ifndef SIM_LOOM_H
#define SIM_LOOM_H

#include "infer/session.h"

#define LOOM_MAX_CHILDREN 256 // most children per node, whatever split says
#define LOOM_MAX_DEPTH 256

// One node of the tree, passed to on_node as it is made.
typedef struct loom_node {
    int id;          // index in loom_result.nodes
    int parent;      // parent's id, -1 for a child of the root
    int depth;       // tokens of its branch, 1.. (this one included)
    int32_t token;
    float prob;      // probability of this token after its parent
    float score;     // the branch's score up to and with this token
    bool leaf;       // the branch ends here (a suggestion, unless empty)
} loom_node;

typedef struct loom_suggestion {
    char *text;      // NUL-terminated; the bytes that follow the prompt
    size_t len;
    float score;
    int32_t *tokens; // (n_tokens)
    int n_tokens;
    int node;        // the leaf's id
} loom_suggestion;

typedef struct loom_result {
    loom_suggestion *suggestions; // (n_suggestions) best first
    int n_suggestions;
    loom_node *nodes;             // (n_nodes) the whole tree in the order it grew
    int n_nodes;
    int n_decodes;                // fwd_decode calls made
    int n_decoded;                // tokens decoded (cold branches count all theirs)
    bool truncated;               // a frontier was cut to max_frontier
} loom_result;

typedef struct loom_params {
    int depth;          // most tokens per suggestion [12]
    int max;            // most suggestions returned [25]
    float cutoff;       // least probability that splits off a branch [0.2]
    float multiplier;   // the cutoff is multiplied by this at each depth [1.0]
    int split;          // most children per node (0: no limit) [3]
    bool autostop;      // end a branch at '.' or ',' [true]
    bool logprob;       // score with the sum of log-probabilities [false]
    kv_seq_mask seqs;   // sequence ids the tree may use (0: every id but the root's — only when
                        // no other session uses the context: the ids are emptied)
    int max_frontier;   // most open branches per depth [4096]
    int max_nodes;      // a larger tree is an error (SIM_ERR_RANGE) [1 << 20]
    bool naive;         // one node per decode call (the reference for tests and benchmarks)
    // Called with each node as it is made; false stops the expansion (SIM_ERR_ABORTED).
    bool (*on_node)(void *ud, const loom_node *node);
    // Called when a depth is finished: how many branches go on to the next.
    bool (*on_depth)(void *ud, int depth, int n_open);
    void *ud;
} loom_params;

loom_params loom_default_params(void);

// Grows the tree after root's tokens (root must have fresh logits and no
// queued tokens) and fills r. See the top of this file.
sim_status loom_expand(sess *root, const loom_params *p, loom_result *r, sim_err *err);
// The same with one node per decode call (params.naive): the reference that
// the batched expansion is compared with.
sim_status loom_expand_naive(sess *root, const loom_params *p, loom_result *r, sim_err *err);
void loom_result_free(loom_result *r);

// A candidate child: a token and its probability.
typedef struct loom_cand {
    int32_t token;
    float prob;
} loom_cand;

// The children of a node from its logits (n_vocab): the most likely token,
// then the others with probability >= cutoff, most likely first (ties: lower
// id), at most split (0: LOOM_MAX_CHILDREN) and at most cap. Returns the count.
int loom_children(const float *logits, int n_vocab, float cutoff, int split, loom_cand *out, int cap);

// Whether a branch whose text was prev[0..n_prev) ends after adding the
// token text t[0..n): t holds '.' or ',' after something that is neither a
// stop character nor white space (in prev or earlier in t).
bool loom_stops(const char *prev, size_t n_prev, const char *t, size_t n);

// The length of text without one trailing space (see the leading space rule).
size_t loom_trim_prompt(const char *text, size_t len);

#endif
