//! The one test suite every [`UserStore`](wxlogin_domain::UserStore) adapter must pass (and the
//! [`Directory`](wxlogin_domain::Directory) of the operators' API, which every store implements),
//! written against the port only, so SQLite and PostgreSQL are held to the same semantics.
//!
//! Must never depend on an adapter: adapters depend on it (as a dev-dependency), never the
//! other way round.
//!
//! Use it from an adapter's `tests/contract.rs`:
//!
//! ```text
//! async fn fresh_store() -> (MyStore, Guard) { /* a new, empty store */ }
//! wxlogin_store_contract::store_contract_tests!(fresh_store);
//! ```
//!
//! The macro generates one multi-threaded `#[tokio::test]` per case in [`cases`] (the calling
//! crate needs `tokio` with `macros` and `rt-multi-thread` among its dev-dependencies). The
//! factory returns a fresh, empty store and a guard (a temporary directory, a throwaway
//! database) that is dropped when the case has finished.
//!
//! **Timestamps.** The service's timestamps come from `Utc::now()`, with nanoseconds;
//! PostgreSQL keeps microseconds. The contract therefore requires that a timestamp read back
//! equals the one written either exactly or truncated to the microsecond (never rounded: an
//! expiry must not move later). Cases other than [`cases::timestamps_round_trip`] use
//! microsecond-precise times and compare exactly.

pub mod cases;
pub mod fixtures;

/// Generates one `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]` per contract
/// case. `$factory` names an `async fn() -> (Store, Guard)`; the guard is kept alive until
/// the case returns.
#[macro_export]
macro_rules! store_contract_tests {
    ($factory:path) => {
        $crate::store_contract_tests!(
            @cases $factory;
            find_or_create,
            concurrent_first_logins_create_one_user,
            sessions_are_found_by_digest_and_app,
            expiry_fields_round_trip,
            revocation_keeps_the_first_time,
            session_keys_are_per_session,
            profile_updates_apply_only_given_fields,
            union_id_is_recorded_once,
            union_id_links_the_identities_of_two_apps,
            concurrent_first_logins_in_two_apps_make_one_user,
            failed_login_leaves_nothing_behind,
            a_failing_login_among_concurrent_ones_fails_alone,
            concurrent_logins_in_opposite_orders_make_one_user_each,
            failed_profile_update_changes_nothing,
            refresh_rotates_the_token,
            refresh_of_an_ended_session_is_not_found,
            concurrent_refreshes_let_one_win,
            failed_refresh_changes_nothing,
            touch_moves_last_seen_forward_only,
            phone_number_is_recorded,
            an_avatar_replaces_the_earlier_one_and_goes_with_the_user,
            erasure_removes_the_user_and_all_of_it,
            erasing_an_unknown_user_is_not_found,
            purge_deletes_exactly_the_ended_sessions,
            the_access_token_is_fetched_once_and_shared,
            a_stale_or_forgotten_access_token_is_fetched_anew,
            concurrent_callers_make_one_access_token_fetch,
            no_statement_waits_for_an_access_token_fetch,
            a_valid_token_is_used_while_another_caller_renews_it,
            a_token_in_its_last_minutes_is_fetched_again_once_per_interval,
            the_lease_is_released_when_a_fetch_ends_fails_or_is_abandoned,
            an_expired_lease_is_taken_over_and_its_late_holder_stores_nothing,
            timestamps_round_trip,
            ping_answers,
            search_pages_users_in_id_order,
            search_filters_by_open_id_and_nickname,
            user_detail_counts_active_sessions,
            revoking_a_users_sessions_ends_all_of_them,
            stats_count_users_sessions_and_logins,
            the_purge_keeps_a_day_of_login_events,
            users_are_shown_with_the_apps_identity_or_their_earliest,
        );
    };
    (@cases $factory:path; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, guard) = $factory().await;
                $crate::cases::$case(store).await;
                ::std::mem::drop(guard);
            }
        )+
    };
}
