/* fhir.c — HL7 FHIR R4 Consent <-> grant, both ways.
 *
 * A hospital's consent system speaks FHIR; the chain speaks grants. This
 * file maps the part of a FHIR R4 Consent that a grant can express exactly,
 * and refuses everything else by name: a construct that would restrict a
 * consent (a deny rule, a nested provision, a data period, a code from a
 * system we do not know) must never be dropped silently, because the grant
 * would then release more than the patient agreed to. Informational parts
 * that change nothing (id, meta, text, identifier, dateTime, display names)
 * are accepted and ignored.
 *
 * The mapping (README "FHIR Consent" has the same table):
 *   Consent.status                 "active" (required)
 *   Consent.patient                identifier {system urn:consent-ledger:key,
 *                                  value: 64 hex}; must be the wallet's
 *                                  patient (optional: the wallet key)
 *   Consent.scope                  consentscope patient-privacy | research |
 *                                  treatment (optional)
 *   Consent.category               LOINC 59284-0 / 57016-8 or consentcategorycodes
 *                                  (optional, informational)
 *   Consent.policyRule             v3-ActCode OPTIN (optional)
 *   provision.type                 "permit" (required)
 *   provision.period               start and end (both required) -> not_before,
 *                                  not_after; FHIR's end is inclusive, the
 *                                  chain's exclusive: not_after = end + 1 s,
 *                                  a date-only end covers that whole day
 *   provision.actor                exactly one, role v3-ParticipationType IRCP
 *                                  or PRCP, reference.identifier as for the
 *                                  patient -> grantee
 *   provision.purpose              v3-ActReason code -> PurposeOfUse code;
 *                                  DUO (http://purl.obolibrary.org/obo/duo.owl,
 *                                  code "DUO:0000042") -> DUO code
 *   provision.class                http://hl7.org/fhir/resource-types -> that
 *                                  resource type; observation-category
 *                                  laboratory | imaging | vital-signs |
 *                                  social-history -> same category;
 *                                  urn:consent-ledger:scope -> any scope code
 *   provision.securityLabel        v3-ActCode HIV | MH | SUD -> hiv |
 *                                  mental-health | substance-use;
 *                                  urn:consent-ledger:scope as above
 *   provision.action               consentaction access | use | disclose
 *                                  (optional; that is what a grant permits)
 * Scopes keep document order, class entries before securityLabel entries.
 */
#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "wallet/wallet.h"

#define SYS_KEY "urn:consent-ledger:key"
#define SYS_SCOPE "urn:consent-ledger:scope"
#define SYS_ACTREASON "http://terminology.hl7.org/CodeSystem/v3-ActReason"
#define SYS_DUO "http://purl.obolibrary.org/obo/duo.owl"
#define SYS_DUO_ALT "http://purl.obolibrary.org/obo/duo"
#define SYS_RESTYPE "http://hl7.org/fhir/resource-types"
#define SYS_OBSCAT "http://terminology.hl7.org/CodeSystem/observation-category"
#define SYS_ACTCODE "http://terminology.hl7.org/CodeSystem/v3-ActCode"
#define SYS_PARTTYPE "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
#define SYS_CONSENTSCOPE "http://terminology.hl7.org/CodeSystem/consentscope"
#define SYS_CONSENTCAT "http://terminology.hl7.org/CodeSystem/consentcategorycodes"
#define SYS_CONSENTACTION "http://terminology.hl7.org/CodeSystem/consentaction"
#define SYS_LOINC "http://loinc.org"

#define CODINGS_MAX 16      /* codings in one CodeableConcept */
#define LIST_MAX 32         /* entries in any other array we walk */

/* Scopes that FHIR names in a standard system of its own. Every other scope
 * travels as a class coding in urn:consent-ledger:scope. The table is a
 * bijection, so export then import gives back the same scope. */
typedef struct {
    const char *scope;
    const char *system;
    const char *code;
    int label;          /* 1: provision.securityLabel, 0: provision.class */
} scope_map;

static const scope_map SCOPE_MAP[] = {
    {"laboratory", SYS_OBSCAT, "laboratory", 0},
    {"imaging", SYS_OBSCAT, "imaging", 0},
    {"vital-signs", SYS_OBSCAT, "vital-signs", 0},
    {"social-history", SYS_OBSCAT, "social-history", 0},
    {"hiv", SYS_ACTCODE, "HIV", 1},
    {"mental-health", SYS_ACTCODE, "MH", 1},
    {"substance-use", SYS_ACTCODE, "SUD", 1},
};
#define N_SCOPE_MAP (sizeof SCOPE_MAP / sizeof SCOPE_MAP[0])

static int is_resource_type(const char *scope)
{
    return chain_scope_valid(scope) && isupper((unsigned char)scope[0]);
}

/* ------------------------------------------------------------------ helpers */

/* Refuses any key of obj not in allowed (NULL-terminated). A few keys FHIR
 * defines but we cannot honour get their own reason. */
static int only_keys(char *err, const json_t *obj, const char *path, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        size_t i;
        int ok = 0;
        for (i = 0; allowed[i] && !ok; i++)
            ok = strcmp(allowed[i], k) == 0;
        if (ok)
            continue;
        if (strcmp(k, "extension") == 0 || strcmp(k, "modifierExtension") == 0)
            snprintf(err, WALLET_ERR_LEN, "%s.%s is not supported (extensions could change "
                     "the meaning of the consent)", path, k);
        else
            snprintf(err, WALLET_ERR_LEN, "%s.%.64s is not supported", path, k);
        return CHAIN_EINVAL;
    }
    return 0;
}

static int want_object(char *err, const json_t *v, const char *path)
{
    if (json_is_object(v))
        return 0;
    snprintf(err, WALLET_ERR_LEN, "%s must be a JSON object", path);
    return CHAIN_EINVAL;
}

/* A non-empty array of at most LIST_MAX entries. */
static int want_array(char *err, const json_t *v, const char *path)
{
    if (json_is_array(v) && json_array_size(v) > 0 && json_array_size(v) <= LIST_MAX)
        return 0;
    snprintf(err, WALLET_ERR_LEN, "%s must be a list of 1..%d entries", path, LIST_MAX);
    return CHAIN_EINVAL;
}

static const char *str_field(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* A Coding: {system, code, display?, version?}; system and code required. */
static int coding(const char **sys, const char **code, char *err, const json_t *c, const char *path)
{
    static const char *const keys[] = {"system", "code", "display", "version", "userSelected", NULL};
    int rc = want_object(err, c, path);
    if (!rc)
        rc = only_keys(err, c, path, keys);
    if (rc)
        return rc;
    *sys = str_field(c, "system");
    *code = str_field(c, "code");
    if (!*sys || !*code || !(*code)[0]) {
        snprintf(err, WALLET_ERR_LEN, "%s needs a system and a code", path);
        return CHAIN_EINVAL;
    }
    return 0;
}

/* A CodeableConcept whose every coding must satisfy accept(); returns 0 and
 * calls accept for each, or the first refusal. */
typedef int (*coding_fn)(void *arg, char *err, const char *sys, const char *code, const char *path);

static int concept(char *err, const json_t *cc, const char *path, coding_fn accept, void *arg)
{
    static const char *const keys[] = {"coding", "text", NULL};
    char p[128];
    json_t *arr, *c;
    size_t i;
    int rc = want_object(err, cc, path);
    if (!rc)
        rc = only_keys(err, cc, path, keys);
    if (rc)
        return rc;
    arr = json_object_get(cc, "coding");
    snprintf(p, sizeof p, "%s.coding", path);
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > CODINGS_MAX) {
        snprintf(err, WALLET_ERR_LEN, "%s must be a list of 1..%d codings", p, CODINGS_MAX);
        return CHAIN_EINVAL;
    }
    json_array_foreach(arr, i, c) {
        const char *sys, *code;
        rc = coding(&sys, &code, err, c, p);
        if (!rc)
            rc = accept(arg, err, sys, code, p);
        if (rc)
            return rc;
    }
    return 0;
}

static int unknown_code(char *err, const char *path, const char *sys, const char *code,
                        const char *supported)
{
    size_t n;
    snprintf(err, WALLET_ERR_LEN, "%.48s: code %.40s of system %.80s is not supported", path, code,
             sys);
    n = strlen(err);
    assert(n < WALLET_ERR_LEN);
    snprintf(err + n, WALLET_ERR_LEN - n, " (%s)", supported);
    return CHAIN_ECODE;
}

/* ------------------------------------------------------------------ times */

/* A FHIR dateTime with at least a day: "YYYY-MM-DD" or
 * "YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm|-hh:mm)". *date_only tells the two
 * apart; *frac is set when a non-zero fraction of a second was given. */
static int fhir_time(uint64_t *out, int *date_only, int *frac, const char *s)
{
    char utc[32];
    const char *tz;
    uint64_t t;
    long off = 0;
    size_t n = s ? strlen(s) : 0;
    *frac = 0;
    if (n == 10) {
        *date_only = 1;
        return wallet_parse_time(out, s);
    }
    *date_only = 0;
    if (n < 20 || n > 40 || (s[10] != 'T'))
        return CHAIN_EINVAL;
    tz = s + 19;
    if (*tz == '.') {
        for (tz++; *tz >= '0' && *tz <= '9'; tz++)
            *frac |= *tz != '0';
    }
    if (tz[0] == '+' || tz[0] == '-') {
        if (strlen(tz) != 6 || !isdigit((unsigned char)tz[1]) || !isdigit((unsigned char)tz[2]) ||
            tz[3] != ':' || !isdigit((unsigned char)tz[4]) || !isdigit((unsigned char)tz[5]))
            return CHAIN_EINVAL;
        off = ((tz[1] - '0') * 10 + (tz[2] - '0')) * 3600L + ((tz[4] - '0') * 10 + (tz[5] - '0')) * 60L;
        if (off > 14 * 3600L)
            return CHAIN_EINVAL;
        off = tz[0] == '+' ? off : -off;
    } else if (strcmp(tz, "Z") != 0) {
        return CHAIN_EINVAL;
    }
    memcpy(utc, s, 19);
    memcpy(utc + 19, "Z", 2);
    if (wallet_parse_time(&t, utc))
        return CHAIN_EINVAL;
    /* Local time minus its offset is UTC. */
    if ((off > 0 && t < (uint64_t)off))
        return CHAIN_EINVAL;
    *out = off >= 0 ? t - (uint64_t)off : t + (uint64_t)(-off);
    return 0;
}

static int period(chain_grant *g, char *err, const json_t *p)
{
    static const char *const keys[] = {"start", "end", NULL};
    int date_only, frac, rc = want_object(err, p, "Consent.provision.period");
    uint64_t start, end;
    if (!rc)
        rc = only_keys(err, p, "Consent.provision.period", keys);
    if (rc)
        return rc;
    if (!str_field(p, "start") || !str_field(p, "end")) {
        snprintf(err, WALLET_ERR_LEN, "Consent.provision.period needs both start and end "
                 "(an open-ended consent is not supported: a grant must end)");
        return CHAIN_ETIME;
    }
    if (fhir_time(&start, &date_only, &frac, str_field(p, "start"))) {
        snprintf(err, WALLET_ERR_LEN, "Consent.provision.period.start: not a FHIR dateTime with "
                 "at least a day and, with a time, a zone (\"%.40s\")", str_field(p, "start"));
        return CHAIN_ETIME;
    }
    start += (uint64_t)frac;   /* a start within a second begins at the next one */
    if (fhir_time(&end, &date_only, &frac, str_field(p, "end"))) {
        snprintf(err, WALLET_ERR_LEN, "Consent.provision.period.end: not a FHIR dateTime with "
                 "at least a day and, with a time, a zone (\"%.40s\")", str_field(p, "end"));
        return CHAIN_ETIME;
    }
    /* FHIR's end is inclusive; the chain's not_after is exclusive. */
    end += date_only ? 86400 : 1;
    if (end <= start) {
        snprintf(err, WALLET_ERR_LEN, "Consent.provision.period ends before it starts");
        return CHAIN_ETIME;
    }
    if (end - start > CHAIN_GRANT_DURATION_MAX_S) {
        snprintf(err, WALLET_ERR_LEN, "Consent.provision.period is longer than 100 years");
        return CHAIN_ETIME;
    }
    g->not_before = start;
    g->not_after = end;
    return 0;
}

/* ------------------------------------------------------------------ references */

/* A Reference that names a key: {identifier: {system: SYS_KEY, value: hex},
 * display?}. A literal reference ("Patient/123") cannot be resolved here. */
static int key_reference(chain_pubkey *out, char *err, const json_t *ref, const char *path)
{
    static const char *const rkeys[] = {"identifier", "display", "type", NULL};
    static const char *const ikeys[] = {"system", "value", "use", NULL};
    char p[128];
    const json_t *id;
    int rc = want_object(err, ref, path);
    if (!rc)
        rc = only_keys(err, ref, path, rkeys);
    if (rc) {
        if (json_object_get(ref, "reference"))
            snprintf(err, WALLET_ERR_LEN, "%s: a literal reference cannot be used; name the key "
                     "as identifier {system \"" SYS_KEY "\", value: 64 hex}", path);
        return rc;
    }
    id = json_object_get(ref, "identifier");
    snprintf(p, sizeof p, "%s.identifier", path);
    rc = want_object(err, id, p);
    if (!rc)
        rc = only_keys(err, id, p, ikeys);
    if (rc)
        return rc;
    if (!str_field(id, "system") || strcmp(str_field(id, "system"), SYS_KEY) != 0) {
        snprintf(err, WALLET_ERR_LEN, "%s.system must be \"" SYS_KEY "\"", p);
        return CHAIN_EINVAL;
    }
    if (wallet_parse_pubkey(out, str_field(id, "value"))) {
        snprintf(err, WALLET_ERR_LEN, "%s.value must be a 64-hex-digit key", p);
        return CHAIN_EINVAL;
    }
    return 0;
}

static int accept_recipient_role(void *arg, char *err, const char *sys, const char *code,
                                 const char *path)
{
    (void)arg;
    if (strcmp(sys, SYS_PARTTYPE) == 0 && (strcmp(code, "IRCP") == 0 || strcmp(code, "PRCP") == 0))
        return 0;
    return unknown_code(err, path, sys, code, "the actor must be a recipient: "
                        "v3-ParticipationType IRCP or PRCP");
}

static int actors(chain_grant *g, char *err, const json_t *arr)
{
    static const char *const keys[] = {"role", "reference", NULL};
    const char *path = "Consent.provision.actor";
    const json_t *a;
    int rc = want_array(err, arr, path);
    if (rc)
        return rc;
    if (json_array_size(arr) != 1) {
        snprintf(err, WALLET_ERR_LEN, "%s: %zu actors; a grant has exactly one recipient (make one "
                 "Consent per grantee)", path, json_array_size(arr));
        return CHAIN_EINVAL;
    }
    a = json_array_get(arr, 0);
    rc = want_object(err, a, path);
    if (!rc)
        rc = only_keys(err, a, path, keys);
    if (!rc && !json_object_get(a, "role")) {
        snprintf(err, WALLET_ERR_LEN, "%s.role is missing", path);
        rc = CHAIN_EINVAL;
    }
    if (!rc)
        rc = concept(err, json_object_get(a, "role"), "Consent.provision.actor.role",
                     accept_recipient_role, NULL);
    if (!rc)
        rc = key_reference(&g->grantee, err, json_object_get(a, "reference"),
                           "Consent.provision.actor.reference");
    return rc;
}

/* ------------------------------------------------------------------ codes */

static int add_code(chain_code *list, uint32_t *n, uint32_t max, char *err, const char *code,
                    const char *path)
{
    uint32_t i;
    for (i = 0; i < *n; i++) {
        if (strcmp(list[i].s, code) == 0) {
            snprintf(err, WALLET_ERR_LEN, "%s: %.72s listed twice", path, code);
            return CHAIN_EINVAL;
        }
    }
    if (*n == max) {
        snprintf(err, WALLET_ERR_LEN, "%s: more than %u codes", path, max);
        return CHAIN_EBOUNDS;
    }
    assert(strlen(code) <= CHAIN_CODE_LEN_MAX);
    snprintf(list[*n].s, sizeof list[*n].s, "%s", code);
    (*n)++;
    return 0;
}

static int purposes(chain_grant *g, char *err, const json_t *arr)
{
    const char *path = "Consent.provision.purpose";
    const json_t *c;
    size_t i;
    int rc = want_array(err, arr, path);
    json_array_foreach(arr, i, c) {
        const char *sys, *code;
        int duo;
        if (rc)
            break;
        rc = coding(&sys, &code, err, c, path);
        if (rc)
            break;
        duo = strcmp(sys, SYS_DUO) == 0 || strcmp(sys, SYS_DUO_ALT) == 0;
        if (!duo && strcmp(sys, SYS_ACTREASON) != 0)
            return unknown_code(err, path, sys, code, "systems: v3-ActReason, DUO");
        if (!chain_purpose_valid(code) || duo != (strncmp(code, "DUO:", 4) == 0))
            return unknown_code(err, path, sys, code, "not a PurposeOfUse or DUO code we know");
        rc = add_code(g->purposes, &g->n_purposes, CHAIN_PURPOSES_MAX, err, code, path);
    }
    return rc;
}

/* The scope a (system, code) stands for, or NULL. */
static const char *scope_of(const char *sys, const char *code, int label)
{
    size_t i;
    if (strcmp(sys, SYS_SCOPE) == 0)
        return chain_scope_valid(code) ? code : NULL;
    if (!label && strcmp(sys, SYS_RESTYPE) == 0)
        return is_resource_type(code) ? code : NULL;
    for (i = 0; i < N_SCOPE_MAP; i++)
        if (SCOPE_MAP[i].label == label && strcmp(SCOPE_MAP[i].system, sys) == 0 &&
            strcmp(SCOPE_MAP[i].code, code) == 0)
            return SCOPE_MAP[i].scope;
    return NULL;
}

static int scopes(chain_grant *g, char *err, const json_t *arr, int label)
{
    const char *path = label ? "Consent.provision.securityLabel" : "Consent.provision.class";
    const json_t *c;
    size_t i;
    int rc = want_array(err, arr, path);
    json_array_foreach(arr, i, c) {
        const char *sys, *code, *scope;
        if (rc)
            break;
        rc = coding(&sys, &code, err, c, path);
        if (rc)
            break;
        scope = scope_of(sys, code, label);
        if (!scope)
            return unknown_code(err, path, sys, code,
                                label ? "labels: v3-ActCode HIV, MH, SUD; " SYS_SCOPE
                                      : "classes: resource-types, observation-category, " SYS_SCOPE);
        rc = add_code(g->scopes, &g->n_scopes, CHAIN_SCOPES_MAX, err, scope, path);
    }
    return rc;
}

static int accept_action(void *arg, char *err, const char *sys, const char *code, const char *path)
{
    (void)arg;
    if (strcmp(sys, SYS_CONSENTACTION) == 0 &&
        (strcmp(code, "access") == 0 || strcmp(code, "use") == 0 || strcmp(code, "disclose") == 0))
        return 0;
    return unknown_code(err, path, sys, code, "a grant permits consentaction access, use, disclose");
}

static int actions(char *err, const json_t *arr)
{
    const json_t *a;
    size_t i;
    int rc = want_array(err, arr, "Consent.provision.action");
    json_array_foreach(arr, i, a) {
        if (rc)
            break;
        rc = concept(err, a, "Consent.provision.action", accept_action, NULL);
    }
    return rc;
}

/* ------------------------------------------------------------------ provision */

/* Constructs of a provision that restrict it in ways a grant cannot say. */
static int provision_refusals(char *err, const json_t *p)
{
    static const struct { const char *key, *why; } no[] = {
        {"provision", "nested provisions (exceptions) are not supported: make one Consent per grant"},
        {"dataPeriod", "dataPeriod (limits on when the data was recorded) is not supported"},
        {"data", "data (specific resources) is not supported: a grant covers classes of data"},
        {"code", "code (specific clinical codes) is not supported: use class or securityLabel"},
    };
    size_t i;
    for (i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (json_object_get(p, no[i].key)) {
            snprintf(err, WALLET_ERR_LEN, "Consent.provision.%s: %s", no[i].key, no[i].why);
            return CHAIN_EINVAL;
        }
    }
    return 0;
}

static int provision(chain_grant *g, char *err, const json_t *p)
{
    static const char *const keys[] = {"type", "period", "actor", "purpose", "class",
                                       "securityLabel", "action", NULL};
    const char *type;
    int rc = want_object(err, p, "Consent.provision");
    if (!rc)
        rc = provision_refusals(err, p);
    if (!rc)
        rc = only_keys(err, p, "Consent.provision", keys);
    if (rc)
        return rc;
    type = str_field(p, "type");
    if (!type || strcmp(type, "permit") != 0) {
        snprintf(err, WALLET_ERR_LEN, "Consent.provision.type must be \"permit\" (got %s%.20s%s): "
                 "deny rules are not supported", type ? "\"" : "", type ? type : "none",
                 type ? "\"" : "");
        return CHAIN_EINVAL;
    }
    if (!json_object_get(p, "period")) {
        snprintf(err, WALLET_ERR_LEN, "Consent.provision.period is missing (a grant must end)");
        return CHAIN_ETIME;
    }
    rc = period(g, err, json_object_get(p, "period"));
    if (!rc)
        rc = actors(g, err, json_object_get(p, "actor"));
    if (!rc)
        rc = purposes(g, err, json_object_get(p, "purpose"));
    if (!rc && json_object_get(p, "class"))
        rc = scopes(g, err, json_object_get(p, "class"), 0);
    if (!rc && json_object_get(p, "securityLabel"))
        rc = scopes(g, err, json_object_get(p, "securityLabel"), 1);
    if (!rc && json_object_get(p, "action"))
        rc = actions(err, json_object_get(p, "action"));
    if (!rc && g->n_scopes == 0) {
        snprintf(err, WALLET_ERR_LEN, "Consent.provision names no data: give class or "
                 "securityLabel (a grant never covers everything)");
        rc = CHAIN_EINVAL;
    }
    return rc;
}

/* ------------------------------------------------------------------ consent */

static int accept_scope(void *arg, char *err, const char *sys, const char *code, const char *path)
{
    (void)arg;
    if (strcmp(sys, SYS_CONSENTSCOPE) == 0 &&
        (strcmp(code, "patient-privacy") == 0 || strcmp(code, "research") == 0 ||
         strcmp(code, "treatment") == 0))
        return 0;
    return unknown_code(err, path, sys, code, "consentscope patient-privacy, research, treatment");
}

static int accept_category(void *arg, char *err, const char *sys, const char *code,
                           const char *path)
{
    (void)arg;
    if (strcmp(sys, SYS_CONSENTCAT) == 0 ||
        (strcmp(sys, SYS_LOINC) == 0 && (strcmp(code, "59284-0") == 0 || strcmp(code, "57016-8") == 0)))
        return 0;
    return unknown_code(err, path, sys, code, "LOINC 59284-0, 57016-8, consentcategorycodes");
}

static int accept_policy_rule(void *arg, char *err, const char *sys, const char *code,
                              const char *path)
{
    (void)arg;
    if (strcmp(sys, SYS_ACTCODE) == 0 && strcmp(code, "OPTIN") == 0)
        return 0;
    return unknown_code(err, path, sys, code, "only v3-ActCode OPTIN: a grant is an opt-in");
}

static int categories(char *err, const json_t *arr)
{
    const json_t *c;
    size_t i;
    int rc = want_array(err, arr, "Consent.category");
    json_array_foreach(arr, i, c) {
        if (rc)
            break;
        rc = concept(err, c, "Consent.category", accept_category, NULL);
    }
    return rc;
}

/* Top level: resourceType, status, patient and the informational fields. */
static int consent_head(char *err, const json_t *j, const chain_pubkey *patient)
{
    static const char *const keys[] = {"resourceType", "id", "meta", "text", "identifier",
                                       "status", "scope", "category", "patient", "dateTime",
                                       "policyRule", "provision", NULL};
    const char *rt = str_field(j, "resourceType"), *st = str_field(j, "status");
    int rc;
    if (!rt || strcmp(rt, "Consent") != 0) {
        snprintf(err, WALLET_ERR_LEN, "resourceType must be \"Consent\"");
        return CHAIN_EINVAL;
    }
    rc = only_keys(err, j, "Consent", keys);
    if (rc)
        return rc;
    if (!st || strcmp(st, "active") != 0) {
        snprintf(err, WALLET_ERR_LEN, "Consent.status must be \"active\" (got \"%.20s\")",
                 st ? st : "");
        return CHAIN_EINVAL;
    }
    if (json_object_get(j, "patient")) {
        chain_pubkey named;
        rc = key_reference(&named, err, json_object_get(j, "patient"), "Consent.patient");
        if (rc)
            return rc;
        if (memcmp(named.b, patient->b, sizeof named.b) != 0) {
            snprintf(err, WALLET_ERR_LEN, "Consent.patient is not the wallet's patient");
            return CHAIN_EPERM;
        }
    }
    if (json_object_get(j, "scope"))
        rc = concept(err, json_object_get(j, "scope"), "Consent.scope", accept_scope, NULL);
    if (!rc && json_object_get(j, "category"))
        rc = categories(err, json_object_get(j, "category"));
    if (!rc && json_object_get(j, "policyRule"))
        rc = concept(err, json_object_get(j, "policyRule"), "Consent.policyRule",
                     accept_policy_rule, NULL);
    if (!rc && json_object_get(j, "dateTime") && !json_is_string(json_object_get(j, "dateTime"))) {
        snprintf(err, WALLET_ERR_LEN, "Consent.dateTime must be a string");
        rc = CHAIN_EINVAL;
    }
    return rc;
}

int wallet_fhir_import(chain_grant *out, char *err, const json_t *consent,
                       const chain_pubkey *patient)
{
    chain_grant g;
    int rc;
    memset(&g, 0, sizeof g);
    if (!json_is_object(consent)) {
        snprintf(err, WALLET_ERR_LEN, "not a FHIR resource (a JSON object)");
        return CHAIN_EINVAL;
    }
    rc = consent_head(err, consent, patient);
    if (!rc && !json_object_get(consent, "provision")) {
        snprintf(err, WALLET_ERR_LEN, "Consent.provision is missing: nothing to grant");
        rc = CHAIN_EINVAL;
    }
    if (!rc)
        rc = provision(&g, err, json_object_get(consent, "provision"));
    if (rc)
        return rc;
    g.patient = *patient;
    assert(g.n_scopes > 0 && g.n_purposes > 0);
    assert(g.not_before < g.not_after);
    *out = g;
    return 0;
}

int wallet_fhir_import_text(chain_grant *out, char *err, const char *text, size_t len,
                            const chain_pubkey *patient)
{
    json_error_t jerr;
    json_t *j;
    int rc;
    if (len > WALLET_FHIR_BYTES_MAX) {
        snprintf(err, WALLET_ERR_LEN, "FHIR document over %d bytes", WALLET_FHIR_BYTES_MAX);
        return CHAIN_EBOUNDS;
    }
    /* Duplicate keys would let two readers see two different consents. */
    j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        snprintf(err, WALLET_ERR_LEN, "not JSON: %.120s (line %d)", jerr.text, jerr.line);
        return CHAIN_EINVAL;
    }
    rc = wallet_fhir_import(out, err, j, patient);
    json_decref(j);
    return rc;
}

/* ------------------------------------------------------------------ export */

static json_t *coding_j(const char *sys, const char *code)
{
    return json_pack("{s:s, s:s}", "system", sys, "code", code);
}

static json_t *concept_j(const char *sys, const char *code)
{
    return json_pack("{s:[o]}", "coding", coding_j(sys, code));
}

static json_t *key_ref_j(const chain_pubkey *k)
{
    char hex[2 * CHAIN_KEY_LEN + 1];
    chain_hex(hex, k->b, sizeof k->b);
    return json_pack("{s:{s:s, s:s}}", "identifier", "system", SYS_KEY, "value", hex);
}

static int time_str(char *out, size_t cap, uint64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return CHAIN_EINVAL;
    return 0;
}

/* The (system, code, label) a scope is written as. */
static void scope_coding(const char **sys, const char **code, int *label, const char *scope)
{
    size_t i;
    *sys = is_resource_type(scope) ? SYS_RESTYPE : SYS_SCOPE;
    *code = scope;
    *label = 0;
    for (i = 0; i < N_SCOPE_MAP; i++) {
        if (strcmp(SCOPE_MAP[i].scope, scope) == 0) {
            *sys = SCOPE_MAP[i].system;
            *code = SCOPE_MAP[i].code;
            *label = SCOPE_MAP[i].label;
        }
    }
}

static json_t *provision_j(const chain_grant *g)
{
    char start[32], end[32];
    json_t *p, *cls = json_array(), *lab = json_array(), *pur = json_array();
    uint32_t i;
    if (time_str(start, sizeof start, g->not_before) || time_str(end, sizeof end, g->not_after - 1))
        cls = (json_decref(cls), NULL);
    for (i = 0; cls && lab && i < g->n_scopes; i++) {
        const char *sys, *code;
        int label;
        scope_coding(&sys, &code, &label, g->scopes[i].s);
        json_array_append_new(label ? lab : cls, coding_j(sys, code));
    }
    for (i = 0; pur && i < g->n_purposes; i++) {
        const char *code = g->purposes[i].s;
        json_array_append_new(pur, coding_j(strncmp(code, "DUO:", 4) == 0 ? SYS_DUO : SYS_ACTREASON,
                                            code));
    }
    p = cls && lab && pur
            ? json_pack("{s:s, s:{s:s, s:s}, s:[{s:o, s:o}], s:O}", "type", "permit", "period",
                        "start", start, "end", end, "actor", "role", concept_j(SYS_PARTTYPE, "IRCP"),
                        "reference", key_ref_j(&g->grantee), "purpose", pur)
            : NULL;
    if (p && json_array_size(cls))
        json_object_set(p, "class", cls);
    if (p && json_array_size(lab))
        json_object_set(p, "securityLabel", lab);
    json_decref(cls);
    json_decref(lab);
    json_decref(pur);
    return p;
}

/* A grant that could not have come from the chain is refused rather than
 * written as a Consent that would not re-import. */
static int grant_exportable(const chain_grant *g)
{
    uint32_t i;
    if (g->n_scopes == 0 || g->n_scopes > CHAIN_SCOPES_MAX || g->n_purposes == 0 ||
        g->n_purposes > CHAIN_PURPOSES_MAX || g->not_before >= g->not_after ||
        g->not_after - g->not_before > CHAIN_GRANT_DURATION_MAX_S)
        return 0;
    for (i = 0; i < g->n_scopes; i++)
        if (!chain_scope_valid(g->scopes[i].s))
            return 0;
    for (i = 0; i < g->n_purposes; i++)
        if (!chain_purpose_valid(g->purposes[i].s))
            return 0;
    return 1;
}

json_t *wallet_fhir_export(const chain_grant *g, const chain_hash *id, int active)
{
    json_t *c, *prov;
    if (!grant_exportable(g))
        return NULL;
    prov = provision_j(g);
    if (!prov)
        return NULL;
    c = json_pack("{s:s}", "resourceType", "Consent");
    if (c && id) {
        char hex[2 * CHAIN_HASH_LEN + 1];
        chain_hex(hex, id->b, sizeof id->b);
        json_object_set_new(c, "id", json_string(hex));
    }
    if (c && (json_object_set_new(c, "status", json_string(active ? "active" : "inactive")) ||
              json_object_set_new(c, "scope", concept_j(SYS_CONSENTSCOPE, "patient-privacy")) ||
              json_object_set_new(c, "category", json_pack("[o]", concept_j(SYS_LOINC, "59284-0"))) ||
              json_object_set_new(c, "patient", key_ref_j(&g->patient)) ||
              json_object_set_new(c, "policyRule", concept_j(SYS_ACTCODE, "OPTIN")) ||
              json_object_set(c, "provision", prov)))
        c = (json_decref(c), NULL);
    json_decref(prov);
    return c;
}

/* ------------------------------------------------------------------ node JSON */

static int codes_from_json(chain_code *list, uint32_t *n, uint32_t max, const json_t *arr,
                           int (*valid)(const char *))
{
    const json_t *v;
    size_t i;
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > max)
        return WALLET_EJSON;
    json_array_foreach(arr, i, v) {
        const char *s = json_string_value(v);
        if (!s || !valid(s))
            return WALLET_EJSON;
        snprintf(list[i].s, sizeof list[i].s, "%s", s);
    }
    *n = (uint32_t)json_array_size(arr);
    return 0;
}

static int u64_field(uint64_t *out, const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return WALLET_EJSON;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int wallet_grant_from_json(chain_grant *out, chain_hash *id_out, int *active_out, char *err,
                           const json_t *j)
{
    chain_grant g;
    chain_hash id;
    const char *st = str_field(j, "status");
    memset(&g, 0, sizeof g);
    if (!json_is_object(j) || wallet_parse_hash(&id, str_field(j, "id")) ||
        wallet_parse_pubkey(&g.patient, str_field(j, "patient")) ||
        wallet_parse_pubkey(&g.grantee, str_field(j, "grantee")) ||
        codes_from_json(g.scopes, &g.n_scopes, CHAIN_SCOPES_MAX, json_object_get(j, "scopes"),
                        chain_scope_valid) ||
        codes_from_json(g.purposes, &g.n_purposes, CHAIN_PURPOSES_MAX,
                        json_object_get(j, "purposes"), chain_purpose_valid) ||
        u64_field(&g.not_before, j, "not_before") || u64_field(&g.not_after, j, "not_after") ||
        !st || (strcmp(st, "active") != 0 && strcmp(st, "revoked") != 0) ||
        g.not_before >= g.not_after) {
        snprintf(err, WALLET_ERR_LEN, "the node's grant is not what the API promises");
        return WALLET_EJSON;
    }
    *out = g;
    *id_out = id;
    *active_out = strcmp(st, "active") == 0;
    return 0;
}
